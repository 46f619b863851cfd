"""The inbox: pushed messages verified, stored durably, then turned into kernel events.

:func:`receive` is what ``POST /hooks/{connector}/{account_id}`` runs: it finds the account
(the tenant is known only from it), lets the connector verify and parse the raw request, and
commits the message to ``core_inbox_message`` **before** :func:`process` turns it into the
``erp_channel_orders`` / ``erp_channel_order`` / ``erp_channel_refund`` / ``erp_channel_payment``
hooks.

Processing parses the stored raw request again (so a replay does exactly what the first run
did), gets the normalized object (from the message, or asks the connector), and delivers it
unless a newer or equal version of the same subject was delivered already: a message
processed twice, or an older message processed after a newer one, delivers nothing. Orders and
refunds share the sync engine's record of delivered versions (``core_channel_object``), so a
version delivered by a sync is not delivered again by a push, nor the reverse; payments, which
the sync does not fetch, are versioned in ``core_inbox_subject``. ``erp inbox replay``
re-processes stored messages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from erp_core.channels import service
from erp_core.channels.errors import AccountError
from erp_core.channels.inbox_models import (
    FAILED,
    PROCESSED,
    RECEIVED,
    InboxMessage,
    InboxSubject,
)
from erp_core.channels.interfaces import (
    RECEIVED_AT_HEADER,
    Connector,
    InboundMessage,
    InvalidMessage,
    PaymentChannel,
    SalesChannel,
)
from erp_core.channels.models import ChannelAccount
from erp_core.channels.sync import record_version
from erp_core.channels.types import Order, Payment, Refund
from erp_core.db.base import utcnow
from erp_core.db.session import Database, bind_tenant, system_access
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings
from erp_core.tenancy.service import enabled_plugins, tenant_hooks

log = logging.getLogger(__name__)

#: The largest body the inbox accepts (platform messages are a few KiB).
MAX_BODY = 1024 * 1024
MAX_ID_LEN = 128
#: Request headers never stored (credentials a misconfigured proxy might pass on).
DROPPED_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})
MAX_ERROR_LEN = 2000


class Rejected(Exception):
    """A pushed message the inbox refuses; ``str()`` is the reason, for the log only."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What the platform is answered."""

    status: int
    body: str
    content_type: str


@dataclass(frozen=True, slots=True)
class Received:
    """The outcome of :func:`receive`: the reply, and the stored row's id (None: rejected)."""

    reply: Reply
    message_id: int | None = None
    duplicate: bool = False
    #: The state processing left the message in (None: a duplicate, not processed again).
    state: str | None = None


def failure_reply(cls: type[Connector] | None) -> Reply:
    status, body, ctype = (cls or Connector).failure_reply()
    return Reply(status, body, ctype)


def success_reply(msg: InboundMessage) -> Reply:
    return Reply(msg.reply_status, msg.reply, msg.reply_content_type)


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers kept for replay: lower-cased names, without cookies and credentials."""
    return {k.lower(): v for k, v in headers.items() if k.lower() not in DROPPED_HEADERS}


def _text(value: Any, what: str, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidMessage(f"the connector returned a non-text {what}")
    if required and not value:
        raise InvalidMessage(f"the connector returned an empty {what}")
    if len(value) > MAX_ID_LEN:
        raise InvalidMessage(f"{what} is longer than {MAX_ID_LEN} characters")
    return value


def parse(
    connector: Connector, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
) -> InboundMessage:
    """Let ``connector`` verify and parse the raw request; :class:`InvalidMessage` if it
    refuses it or returns something the inbox cannot store."""
    if isinstance(connector, SalesChannel):
        msg = connector.parse_message(headers, body, query)
    elif isinstance(connector, PaymentChannel):
        msg = connector.parse_notification(headers, body, query)
    else:  # pragma: no cover - load_connector admits only these two
        raise InvalidMessage(f"{type(connector).__name__} takes no pushed messages")
    if not isinstance(msg, InboundMessage):
        raise InvalidMessage("the connector did not return an InboundMessage")
    _text(msg.message_id, "message_id", required=True)
    _text(msg.topic, "topic")
    _text(msg.subject_id, "subject_id")
    if msg.kind not in ("order", "refund", "payment", ""):
        raise InvalidMessage(f"unknown message kind {msg.kind!r}")
    return msg


def _connector(
    session: Session, registry: PluginRegistry, settings: Settings, account: ChannelAccount
) -> Connector:
    cls = service.connector_class(registry, account.connector)
    return cls(service.account_context(session, account, settings))


# --- receiving -------------------------------------------------------------------------------


def receive(
    db: Database,
    registry: PluginRegistry,
    settings: Settings,
    *,
    connector: str,
    account_id: str,
    headers: Mapping[str, str],
    body: bytes,
    query: Mapping[str, str],
    process_now: bool = True,
) -> Received:
    """Verify, store (committed) and, with ``process_now``, process one pushed message.

    A rejected message changes nothing and gets the connector's failure reply; the reason is
    logged (never the body, the headers or a secret). A stored message is answered with the
    reply the connector gave, whatever processing does: it is safely stored, and a failure
    is kept on the row for ``erp inbox replay``.
    """
    cls = service.connectors(registry).get(connector)
    # only the inbox says when a message arrived (see message_received_at)
    headers = {k: v for k, v in headers.items() if k.lower() != RECEIVED_AT_HEADER}
    try:
        if cls is None:
            raise Rejected("no such connector installed")
        with db.session() as s:
            stored = _verify_and_store(
                s, registry, settings, cls, connector, account_id, headers, body, query
            )
            row_id, tenant_id, msg, duplicate = stored
            state = None if duplicate else RECEIVED
            if process_now and not duplicate:
                try:
                    with s.begin():
                        bind_tenant(s, tenant_id)
                        row = s.get(InboxMessage, row_id)
                        assert row is not None
                        state = process(s, row, registry=registry, settings=settings)
                except Exception:  # stored all the same: the platform gets its success reply
                    log.exception("inbox: processing message %s broke; replay it", row_id)
    except Rejected as exc:
        log.warning(
            "inbox: rejected a message for %r account %r: %s",
            connector[:40],
            account_id[:40],
            exc,
        )
        return Received(failure_reply(cls))
    return Received(success_reply(msg), row_id, duplicate, state)


def _verify_and_store(
    s: Session,
    registry: PluginRegistry,
    settings: Settings,
    cls: type[Connector],
    connector: str,
    account_id: str,
    headers: Mapping[str, str],
    body: bytes,
    query: Mapping[str, str],
) -> tuple[int, int, InboundMessage, bool]:
    if not (account_id.isascii() and account_id.isdigit()) or len(account_id) > 18:
        raise Rejected("the account id is not a number")
    with s.begin():
        with system_access(s):  # the tenant is known only from the account
            account = s.get(ChannelAccount, int(account_id))
            tenant_id = account.tenant_id if account is not None else None
        if account is None or tenant_id is None:
            raise Rejected("no such account")
        if account.connector != connector:
            raise Rejected("the account belongs to another connector")
        if not account.active:
            raise Rejected("the account is inactive")
        bind_tenant(s, tenant_id)
        if connector not in enabled_plugins(s, tenant_id):
            raise Rejected("the connector is not enabled for the account's tenant")
        account = service.get_account(s, int(account_id))
        try:
            conn = cls(service.account_context(s, account, settings))
            msg = parse(conn, headers, body, query)
        except InvalidMessage as exc:
            raise Rejected(f"verification failed: {exc}") from None
        except AccountError as exc:
            raise Rejected(str(exc)) from None
        except Exception as exc:  # a connector bug must not store an unverified message
            raise Rejected(f"the connector failed: {type(exc).__name__}") from None
        row = InboxMessage(
            account_id=account.id,
            connector=connector,
            message_id=msg.message_id,
            topic=msg.topic,
            kind=msg.kind,
            subject_id=msg.subject_id,
            headers=stored_headers(headers),
            body=bytes(body),
            query=dict(query),
            state=RECEIVED,
            attempts=0,
            result="",
        )
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:
            existing = s.scalar(
                select(InboxMessage.id).where(
                    InboxMessage.account_id == account.id,
                    InboxMessage.message_id == msg.message_id,
                )
            )
            if existing is None:  # pragma: no cover - the constraint names this row
                raise
            log.info("inbox: message %s of account %s delivered again", existing, account.id)
            return existing, tenant_id, msg, True
        log.info(
            "inbox: stored message %s (%s %s) of account %s",
            row.id,
            msg.topic,
            msg.kind,
            account.id,
        )
        return row.id, tenant_id, msg, False


# --- processing ------------------------------------------------------------------------------


def _subject(conn: Connector, msg: InboundMessage) -> Order | Refund | Payment | None:
    """The normalized object the message is about (None: nothing to deliver)."""
    if not msg.kind:
        return None
    expected = {"order": Order, "refund": Refund, "payment": Payment}[msg.kind]
    obj = msg.subject
    if obj is None:
        if not msg.subject_id:
            raise ValueError(f"a {msg.kind} message names no subject")
        if msg.kind == "order" and isinstance(conn, SalesChannel):
            obj = conn.get_order(msg.subject_id)
        elif msg.kind == "payment" and isinstance(conn, PaymentChannel):
            obj = conn.query_payment(msg.subject_id)
        else:
            raise ValueError(
                f"a {msg.kind} message of {type(conn).__name__} must carry the {msg.kind}"
            )
    if not isinstance(obj, expected):
        raise ValueError(f"a {msg.kind} message carries a {type(obj).__name__}")
    return obj


def _identity(obj: Order | Refund | Payment, msg: InboundMessage) -> tuple[str, datetime | None]:
    if isinstance(obj, Order):
        return obj.order_id, obj.modified_at
    if isinstance(obj, Refund):
        return obj.refund_id, obj.modified_at
    return obj.out_trade_no, msg.occurred_at or obj.paid_at


def process(
    session: Session,
    message: InboxMessage,
    *,
    registry: PluginRegistry,
    settings: Settings,
    hooks: Any = None,
) -> str:
    """Process one stored message in ``session`` (acting for its tenant); returns its state.

    The caller commits. A failure (the message no longer verifies, the connector or a hook
    raises) rolls back what processing did, and leaves the message ``failed`` with the
    error; processing it again later is safe.
    """
    if session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        # one processor at a time per message (a replay racing the request that stored it)
        session.execute(
            select(InboxMessage.id).where(InboxMessage.id == message.id).with_for_update()
        )
        session.refresh(message)
    was_processed = message.state == PROCESSED
    message.attempts = (message.attempts or 0) + 1
    try:
        with session.begin_nested():
            result = _deliver(session, message, registry, settings, hooks, was_processed)
    except Exception as exc:
        message.state = FAILED
        message.last_error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LEN]
        message.result = "failed"
        log.warning(
            "inbox: message %s of account %s failed: %s",
            message.id,
            message.account_id,
            message.last_error,
        )
    else:
        message.state = PROCESSED
        message.last_error = None
        message.result = result[:300]
        message.processed_at = utcnow()
        log.info("inbox: message %s processed: %s", message.id, message.result)
    session.flush()
    return message.state


def _call_hooks(
    session: Session, hooks: Any, tenant_id: int, account_id: int, obj: Order | Refund | Payment
) -> None:
    if hooks is None:
        return
    args = {"session": session, "tenant_id": tenant_id, "account_id": account_id}
    if isinstance(obj, Order):
        hooks.erp_channel_orders(**args, orders=[obj])
        hooks.erp_channel_order(**args, order=obj)
    elif isinstance(obj, Refund):
        hooks.erp_channel_refund(**args, refund=obj)
    else:
        hooks.erp_channel_payment(**args, payment=obj)


def _deliver(
    session: Session,
    message: InboxMessage,
    registry: PluginRegistry,
    settings: Settings,
    hooks: Any,
    was_processed: bool,
) -> str:
    account = service.get_account(session, message.account_id)
    conn = _connector(session, registry, settings, account)
    arrived = message.received_at
    if arrived.tzinfo is None:  # SQLite hands naive UTC back
        arrived = arrived.replace(tzinfo=UTC)
    headers = {**message.headers, RECEIVED_AT_HEADER: arrived.isoformat()}
    msg = parse(conn, headers, message.body, message.query)
    if msg.message_id != message.message_id:
        raise InvalidMessage("the stored request parses to another message id")
    obj = _subject(conn, msg)
    if obj is None:
        return f"stored ({msg.topic or 'no topic'}; nothing to deliver)"
    subject_id, version = _identity(obj, msg)
    hooks = hooks if hooks is not None else tenant_hooks(session, account.tenant_id)
    if isinstance(obj, Order | Refund):
        # one record of delivered versions for pushes and sync alike (core_channel_object):
        # a version the sync delivered is not delivered again by a push, and the reverse
        verdict = record_version(session, account.id, obj)
        if verdict in ("unchanged", "stale"):
            what = "already delivered" if verdict == "unchanged" else "older than delivered"
            return f"{msg.kind} {subject_id} {what} (version {obj.modified_at.isoformat()})"
        _call_hooks(session, hooks, account.tenant_id, account.id, obj)
        session.flush()
        return f"delivered {msg.kind} {subject_id}"
    seen = session.scalars(
        select(InboxSubject)
        .where(
            InboxSubject.account_id == account.id,
            InboxSubject.kind == msg.kind,
            InboxSubject.subject_id == subject_id,
        )
        .with_for_update()
    ).one_or_none()
    if seen is not None and version is not None and version <= seen.version:
        what = "already delivered" if version == seen.version else "older than delivered"
        return f"{msg.kind} {subject_id} {what} (version {version.isoformat()})"
    if version is None and was_processed:  # no version to compare: once per message
        return f"{msg.kind} {subject_id} already delivered by this message"
    _call_hooks(session, hooks, account.tenant_id, account.id, obj)
    if version is not None:
        if seen is None:
            session.add(
                InboxSubject(
                    account_id=account.id,
                    kind=msg.kind,
                    subject_id=subject_id,
                    version=version,
                    message_id=message.message_id,
                )
            )
        else:
            seen.version = version
            seen.message_id = message.message_id
        session.flush()
    return f"delivered {msg.kind} {subject_id}"


# --- replay ----------------------------------------------------------------------------------


def select_messages(
    session: Session,
    *,
    account_id: int | None = None,
    since: datetime | None = None,
    states: tuple[str, ...] = (RECEIVED, FAILED),
    message_id: str | None = None,
) -> list[tuple[int, int, str]]:
    """``(row id, account id, message id)`` of the tenant's stored messages to replay, oldest
    first. ``message_id`` selects that message whatever its state."""
    stmt = select(InboxMessage.id, InboxMessage.account_id, InboxMessage.message_id).order_by(
        InboxMessage.received_at, InboxMessage.id
    )
    if account_id is not None:
        stmt = stmt.where(InboxMessage.account_id == account_id)
    if since is not None:
        stmt = stmt.where(InboxMessage.received_at >= since)
    if message_id is not None:
        stmt = stmt.where(InboxMessage.message_id == message_id)
    else:
        stmt = stmt.where(InboxMessage.state.in_(states))
    return [(r[0], r[1], r[2]) for r in session.execute(stmt)]


__all__ = [
    "FAILED",
    "MAX_BODY",
    "PROCESSED",
    "RECEIVED",
    "Received",
    "Rejected",
    "Reply",
    "failure_reply",
    "inbox_group",
    "parse",
    "process",
    "receive",
    "select_messages",
]


# --- command line ----------------------------------------------------------------------------


# --- sweep: what a crash or a failure left behind ---------------------------------------------

#: A message still ``received`` this long after it arrived was left by a process that stopped
#: between storing and processing it (the platform had its reply): the sweep processes it.
SWEEP_AFTER = timedelta(minutes=1)
#: A failed message is processed again automatically this long after it arrived, once per
#: entry (a platform that did not answer, a hook that hit a lock); after the last it waits for
#: people (``erp inbox replay``), its error on the row.
RETRY_AFTER = (timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=60))
#: Messages one sweep processes at most (the next sweep takes the rest).
SWEEP_LIMIT = 500
#: How often the scheduler runs the sweep (seconds).
SWEEP_EVERY_SECONDS = 60.0
SWEEP_TASK = "erp.inbox.sweep"


@dataclass
class Swept:
    """What one :func:`sweep` did."""

    processed: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.processed} processed, {self.failed} failed"


def due_messages(
    session: Session, now: datetime, *, limit: int = SWEEP_LIMIT
) -> list[tuple[int, int]]:
    """``(tenant id, row id)`` of the messages the sweep should process now, oldest first:
    ``received`` ones older than :data:`SWEEP_AFTER`, and ``failed`` ones whose next automatic
    attempt (:data:`RETRY_AFTER`) is due. Reads each tenant through its state index."""
    from erp_core.tenancy.models import Tenant

    out: list[tuple[int, int]] = []
    with system_access(session):
        tenants = list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
        for tid in tenants:
            rows = session.execute(
                select(
                    InboxMessage.id,
                    InboxMessage.state,
                    InboxMessage.attempts,
                    InboxMessage.received_at,
                )
                .where(
                    InboxMessage.tenant_id == tid,
                    InboxMessage.state.in_((RECEIVED, FAILED)),
                )
                .order_by(InboxMessage.id)
                .limit(limit * 4)
            )
            for row_id, state, attempts, received_at in rows:
                if received_at.tzinfo is None:
                    received_at = received_at.replace(tzinfo=UTC)
                age = now - received_at
                if state == RECEIVED:
                    due = age >= SWEEP_AFTER
                else:
                    tries = attempts or 0
                    due = 1 <= tries <= len(RETRY_AFTER) and age >= RETRY_AFTER[tries - 1]
                if due:
                    out.append((tid, row_id))
    out.sort(key=lambda r: r[1])
    return out[:limit]


def sweep(
    db: Database,
    registry: PluginRegistry,
    settings: Settings,
    *,
    now: datetime | None = None,
    limit: int = SWEEP_LIMIT,
) -> Swept:
    """Process the messages left behind (see :func:`due_messages`), each in its own
    transaction as a replay does. Safe beside the request that stored a message and beside
    another sweep: a message already processed meanwhile is not processed again."""
    now = now or utcnow()
    done = Swept()
    with db.session() as s:
        todo = due_messages(s, now, limit=limit)
    for tenant_id, row_id in todo:
        with db.session() as s, s.begin():
            bind_tenant(s, tenant_id)
            row = s.get(InboxMessage, row_id)
            if row is None or row.state == PROCESSED:
                continue
            if process(s, row, registry=registry, settings=settings) == FAILED:
                done.failed += 1
            else:
                done.processed += 1
    if todo:
        log.info("inbox sweep: %s", done)
    return done


def _register_tasks() -> Any:
    from celery import shared_task

    @shared_task(
        name=SWEEP_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True
    )
    def sweep_task(self: Any) -> str:
        """Process the pushed messages a crash or a failure left behind (see :func:`sweep`)."""
        from erp_core.tasks.runtime import runtime

        rt = runtime()
        return str(sweep(rt.db, rt.registry, rt.settings))

    return sweep_task


sweep_task = _register_tasks()


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO date or date-time (2026-11-30, 2026-11-30T08:00+08:00)",
            param_hint="--since",
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@click.group("inbox")
def inbox_group() -> None:
    """Pushed channel messages (the inbox of /hooks/...)."""


@inbox_group.command("replay")
@click.option("--tenant", "slug", required=True, help="Tenant whose messages to replay.")
@click.option("--account", "account_id", type=int, help="Only this channel account's messages.")
@click.option("--since", help="Only messages received at or after this (ISO; naive is UTC).")
@click.option("--failed-only", is_flag=True, help="Only messages whose processing failed.")
@click.option(
    "--all", "include_processed", is_flag=True, help="Processed messages too (no effect twice)."
)
@click.option("--message", "message_id", help="Only the message with this platform id.")
def replay(
    slug: str,
    account_id: int | None,
    since: str | None,
    failed_only: bool,
    include_processed: bool,
    message_id: str | None,
) -> None:
    """Process stored messages again, oldest first, each in its own transaction.

    By default the messages not processed yet (received or failed). Processing is
    idempotent: a version already delivered is not delivered again. Exits 1 if any fails.
    """
    from erp_core.channels.cli import _ctx

    if failed_only and include_processed:
        raise click.UsageError("--failed-only and --all exclude each other")
    if message_id is not None and (failed_only or include_processed):
        raise click.UsageError("--message replays that message whatever its state")
    when = _since(since)
    states: tuple[str, ...] = (
        (FAILED,)
        if failed_only
        else (RECEIVED, FAILED, PROCESSED)
        if include_processed
        else (RECEIVED, FAILED)
    )
    c = _ctx()
    with c.tenant(slug) as (s, tenant):
        if account_id is not None and s.get(ChannelAccount, account_id) is None:
            raise click.ClickException(f"tenant {slug} has no channel account {account_id}")
        rows = select_messages(
            s, account_id=account_id, since=when, states=states, message_id=message_id
        )
        tenant_id = tenant.id
    if message_id is not None:
        if not rows:
            raise click.ClickException(f"no stored message {message_id!r} in tenant {slug}")
        accounts = sorted({a for _, a, _ in rows})
        if len(accounts) > 1:
            raise click.ClickException(
                f"message {message_id!r} exists for accounts {', '.join(map(str, accounts))}; "
                "name one with --account"
            )
    if not rows:
        click.echo("no messages to replay")
        return
    failed = 0
    total = len(rows)
    for n, (row_id, acc, mid) in enumerate(rows, 1):
        with c.db.session() as s, s.begin():
            bind_tenant(s, tenant_id)
            row = s.get(InboxMessage, row_id)
            if row is None:  # pragma: no cover - deleted meanwhile
                continue
            state = process(s, row, registry=c.registry, settings=c.settings)
            detail = row.result if state == PROCESSED else (row.last_error or "")
        if state != PROCESSED:
            failed += 1
        click.echo(f"[{n}/{total}] account {acc} message {mid}: {state}: {detail}")
    click.echo(f"replayed {total} message(s): {total - failed} processed, {failed} failed")
    if failed:
        raise click.exceptions.Exit(1)
