"""The embedded broker: kombu's SQLAlchemy transport, made fit for late acknowledgement.

kombu's stock ``sqla+`` transport marks a message invisible when a worker takes it and never
looks at it again: acknowledged messages pile up in the table for ever, and a message taken by a
worker that died before acknowledging it is never delivered again (which defeats
``acks_late``). It also hands every transport option to ``create_engine``, so the usual
``polling_interval`` option crashes the worker.

This transport keeps kombu's tables and message format (so either can read what the other
wrote) and adds:

* an acknowledged or rejected message is deleted;
* a worker refreshes the timestamp of the messages it holds while it is alive, and a message
  held by nobody (invisible and not refreshed for ``visibility_timeout`` seconds, because its
  worker died) is made visible again and so delivered again;
* a worker that is stopping takes no new message and stops polling at once;
* ``polling_interval`` and ``visibility_timeout`` are transport options, not engine arguments;
  SQLite files are opened in WAL mode with a busy timeout.

The Celery app selects it for ``sqla+...`` broker URLs (see :func:`erp_core.tasks.app.broker`).
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import datetime, timedelta
from json import loads
from queue import Empty
from time import monotonic, sleep
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import create_engine, delete, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from erp_core.db.session import install_sqlite_pragmas

log = logging.getLogger(__name__)

DEFAULT_VISIBILITY_TIMEOUT = 3600.0

#: Transport options that are ours or kombu's, never ``create_engine`` arguments.
_NOT_ENGINE_OPTIONS = frozenset(
    {
        "queue_tablename",
        "message_tablename",
        "callback",
        "errback",
        "max_retries",
        "interval_start",
        "interval_step",
        "interval_max",
        "retry_errors",
        "polling_interval",
        "visibility_timeout",
    }
)


def _now() -> datetime:
    # kombu's model stamps ``timestamp`` with naive local time (``datetime.now``); so do we.
    return datetime.now()


class Channel(kombu_sqla.Channel):
    """A channel that deletes acknowledged messages and redelivers orphaned ones."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        opts = connection.client.transport_options
        self.visibility_timeout = float(
            opts.get("visibility_timeout") or DEFAULT_VISIBILITY_TIMEOUT
        )
        # Seconds between two refreshes of held messages, or two looks for orphaned ones.
        self.refresh_every = max(min(self.visibility_timeout / 4, 60.0), 0.25)
        # Messages this channel took and has not acknowledged yet: delivery tag -> row id.
        self._held: dict[str, int] = {}
        self._held_lock = threading.Lock()
        self._next_upkeep = 0.0
        self._closing = threading.Event()
        self._keeper: threading.Thread | None = None

    # --- engine ---------------------------------------------------------------------------

    def _engine_from_config(self) -> Engine:
        conninfo = self.connection.client
        url: str = conninfo.hostname
        options = {
            k: v for k, v in conninfo.transport_options.items() if k not in _NOT_ENGINE_OPTIONS
        }
        if not url.startswith("sqlite"):
            return create_engine(url, **options)
        connect_args = {
            "check_same_thread": False,
            "timeout": 30,
            **options.pop("connect_args", {}),
        }
        engine = create_engine(url, connect_args=connect_args, **options)

        install_sqlite_pragmas(engine, foreign_keys=False)
        return engine

    def _engine(self) -> Engine:
        engine, _ = self._open()
        return engine

    # --- delivery -------------------------------------------------------------------------

    def drain_events(self, timeout: float | None = None, callback: Any = None) -> Any:
        self._upkeep()
        return super().drain_events(timeout=timeout, callback=callback)

    def _get(self, queue: str, timeout: Any = None) -> Any:
        obj = self._get_or_create(queue)
        session = self.session
        if session.bind.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            msg = (
                session.query(self.message_cls)
                .with_for_update()
                .filter(self.message_cls.queue_id == obj.id)
                .filter(self.message_cls.visible.is_not(False))
                .order_by(self.message_cls.sent_at)
                .order_by(self.message_cls.id)
                .limit(1)
                .first()
            )
            if msg is None:
                raise Empty()
            msg.visible = False  # also stamps ``timestamp`` with now (the model's onupdate)
            row_id = int(msg.id)
            payload: dict[str, Any] = loads(bytes_to_str(msg.payload))
        finally:
            session.commit()
        tag = payload.get("properties", {}).get("delivery_tag")
        if tag is not None:
            with self._held_lock:
                self._held[tag] = row_id
            self._start_keeper()
        return payload

    def close(self) -> None:
        self._closing.set()
        super().close()

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple=multiple)
        self._forget(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        # With requeue, kombu puts a fresh copy through _restore (which forgets the old row).
        super().basic_reject(delivery_tag, requeue=requeue)
        self._forget(delivery_tag)

    def _restore(self, message: Any) -> None:
        super()._restore(message)
        self._forget(message.delivery_tag)

    def _forget(self, delivery_tag: str) -> None:
        """Delete the row of a message that is acknowledged, rejected or requeued as a copy."""
        with self._held_lock:
            row_id = self._held.pop(delivery_tag, None)
        if row_id is None:
            return
        table = self.message_cls.__table__
        try:
            with self._engine().begin() as conn:
                conn.execute(delete(table).where(table.c.id == row_id))
        except SQLAlchemyError as exc:
            # The message stays invisible; it will be delivered again after the visibility
            # timeout, which tasks tolerate (they are idempotent).
            log.warning("could not delete acknowledged message %s: %s", row_id, exc)

    # --- visibility ---------------------------------------------------------------------

    def _start_keeper(self) -> None:
        """Refresh held messages from a thread of their own: the consumer loop does not run
        while a ``solo`` worker runs a task, nor while a stopping worker finishes its tasks."""
        if self._keeper is not None and self._keeper.is_alive():
            return
        self._keeper = threading.Thread(
            target=self._keep_held, name="erp-broker-keeper", daemon=True
        )
        self._keeper.start()

    def _keep_held(self) -> None:
        while not self._closing.wait(self.refresh_every):
            with self._held_lock:
                held = list(self._held.values())
            if not held:
                continue
            table = self.message_cls.__table__
            try:
                with self._engine().begin() as conn:
                    conn.execute(
                        update(table)
                        .where(table.c.id.in_(held))
                        .values(timestamp=_now(), version=table.c.version + 1)
                    )
            except SQLAlchemyError as exc:
                log.warning("could not refresh held messages: %s", exc)

    def _upkeep(self) -> None:
        """Make messages whose worker died (not refreshed for the visibility timeout)
        visible again, so that they are delivered again."""
        now = monotonic()
        if now < self._next_upkeep:
            return
        self._next_upkeep = now + self.refresh_every
        table = self.message_cls.__table__
        stale = _now() - timedelta(seconds=self.visibility_timeout)
        try:
            with self._engine().begin() as conn:
                restored = conn.execute(
                    update(table)
                    .where(table.c.visible.is_(False), table.c.timestamp < stale)
                    .values(visible=True, timestamp=_now(), version=table.c.version + 1)
                ).rowcount
        except SQLAlchemyError as exc:
            log.warning("broker upkeep failed: %s", exc)
            return
        if restored:
            log.warning(
                "%d message(s) taken by a worker that stopped without acknowledging them "
                "will be delivered again",
                restored,
            )


def _worker_stopping() -> bool:
    """Whether this process is a Celery worker that was asked to shut down."""
    state = sys.modules.get("celery.worker.state")
    if state is None:
        return False
    return state.should_stop is not None or state.should_terminate is not None


class Transport(kombu_sqla.Transport):
    """kombu's SQLAlchemy transport with :class:`Channel`."""

    Channel = Channel

    def drain_events(self, connection: Any, timeout: Any = None) -> Any:  # type: ignore[override]
        """kombu's polling loop, except that it gives up at once when the worker is
        stopping (Celery's loop waits out two full polls of two seconds otherwise), and so
        takes no new message while the worker stops."""
        cycle = self.cycle
        assert cycle is not None, "transport not connected"
        start = monotonic()
        interval = self.polling_interval
        if timeout and interval and interval > timeout:
            interval = timeout
        while True:
            if _worker_stopping():
                raise TimeoutError()
            try:
                cycle.get(self._deliver, timeout=timeout)
            except Empty:
                if timeout is not None and monotonic() - start >= timeout:
                    raise TimeoutError() from None
                if interval is not None:
                    sleep(interval)
            else:
                return
