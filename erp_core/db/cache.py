"""Master data kept across transactions, per process, by tenant and epoch.

Most transactions read the same few rows again: the chart of accounts, SKUs, warehouses and
their locations, a plugin's settings, rules and tables of rates. Their models take the
:class:`MasterData` mixin. Every transaction that writes a row of one bumps its tenant's
``core_tenant.data_epoch`` before the write reaches the database, in the same transaction.
:func:`cached` keeps what a loader returned under (engine, tenant, name) together with the
epoch it was read at; a later transaction of any session of this process that reads the same
epoch takes the value without a query. The epoch is read once per transaction, in the same
statement as the plugin epoch (:func:`tenant_epochs`).

What makes it safe:

- A transaction that has written master data of a tenant neither takes nor stores that
  tenant's cached values: it sees its own changes, and nothing it has not committed leaves it.
  Others see the change from their next transaction, which reads the new epoch.
- The epoch is read before the data, in the same transaction. So a value is never older than
  the epoch it is stored under: on SQLite both come from one snapshot; on PostgreSQL (read
  committed) the data may be newer, which a reader of the older epoch may see as it would by
  reading the rows itself.
- A new tenant's epoch starts at a random number, so a tenant id used again (a database
  restored or recreated under a running process) does not meet the old tenant's values.
- Writes are caught where the ORM sees them: a flush of a new, changed or deleted
  :class:`MasterData` object, and an ``insert()``, ``update()`` or ``delete()`` of a
  master-data table run through the session. A write that bypasses the session (SQL on a bare
  connection, another program) must call :func:`bump` itself.

Rules for loaders: return plain data that nobody changes afterwards (tuples, frozen
dataclasses, frozensets, dicts treated as read-only), never ORM instances, which belong to
one session; and read only master-data tables and the tenant's own row, since nothing else
invalidates the value.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, bindparam, column, select, table, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, SessionTransaction, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.util import identity_key

from erp_core.db.base import TenantScoped
from erp_core.db.direct import Direct

T = TypeVar("T")
M = TypeVar("M")

#: Values kept per engine; the least recently stored go first.
MAX_ENTRIES = 4096
#: Copies of rows kept per tenant (:func:`keep_rows`); beyond, rows are read as before.
MAX_ROWS = 5000

_TENANT = table("core_tenant", column("id"), column("plugin_epoch"), column("data_epoch"))
#: built once: the statement is read in every transaction, and building it costs more than
#: running it
_EPOCHS_Q = Direct(
    select(_TENANT.c.plugin_epoch, _TENANT.c.data_epoch).where(_TENANT.c.id == bindparam("tid"))
)

#: ``Session.info`` keys: (root transaction, tenant id, epochs) last read; (root transaction,
#: tenants whose master data it wrote, tenants whose epoch it has bumped). ``None`` in a set
#: stands for every tenant.
_EPOCHS = "erp_tenant_epochs"
_WRITES = "erp_master_writes"
#: ``Session.info`` key: (root transaction, tenant id, data epoch, the engine's store), found
#: by a :func:`cached` call of the transaction that wrote no master data of the tenant; the
#: next calls of the transaction look their value up there. A master-data write of the
#: transaction goes through :func:`bump`, which drops it (:func:`forget_epochs`), and a pending
#: one is flushed by the full path (taken whenever the session holds unflushed changes).
_HITS = "erp_cache_hits"
#: ``Session.info`` key of the session's tenant (set by erp_core.db.session, which imports
#: this module)
TENANT_KEY = "erp_tenant_id"

#: Names of the tables whose models are master data.
MASTER_TABLES: set[str] = set()

_stores: weakref.WeakKeyDictionary[Engine, OrderedDict[tuple[int, str], tuple[int, Any]]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


class MasterData:
    """Mixin for models whose rows are master data (see the module's docstring): read by most
    transactions, written by few. Writing one bumps its tenant's data epoch."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("__tablename__")
        if isinstance(name, str):
            MASTER_TABLES.add(name)


def session_tenant(session: Session) -> int | None:
    from erp_core.db.session import session_tenant as bound

    return bound(session)


def new_epoch() -> int:
    """A new tenant's first data epoch: random, far from the INTEGER column's end."""
    return secrets.randbits(30)


def _root(session: Session) -> SessionTransaction:
    session.connection()  # begin the transaction, so that it can be told apart
    txn = session.get_transaction()
    assert txn is not None
    return txn


def tenant_epochs(session: Session, tenant_id: int) -> tuple[int, int] | None:
    """The tenant's (plugin epoch, data epoch), read once per transaction; None if there is
    no such tenant."""
    held = session.info.get(_EPOCHS)
    if held is not None and held[0] is session.get_transaction() and held[1] == tenant_id:
        return held[2]
    txn = _root(session)
    row = _EPOCHS_Q.first(session.connection(), {"tid": tenant_id})
    epochs = (int(row[0]), int(row[1])) if row is not None else None
    session.info[_EPOCHS] = (txn, tenant_id, epochs)
    return epochs


def forget_epochs(session: Session) -> None:
    """Read the epochs again at the next call (after this transaction changed one)."""
    session.info.pop(_EPOCHS, None)
    session.info.pop(_HITS, None)


def _writes(session: Session) -> tuple[set[int | None], set[int | None]]:
    held = session.info.get(_WRITES)
    if held is not None and held[0] is session.get_transaction():
        return held[1], held[2]
    txn = _root(session)
    if held is None or held[0] is not txn:
        held = (txn, set(), set())
        session.info[_WRITES] = held
    return held[1], held[2]


def bump(session: Session, tenant_ids: Iterable[int | None]) -> None:
    """Record that this transaction writes master data of ``tenant_ids`` (``None``: of every
    tenant) and bump their data epochs, once per transaction and tenant. Call it before the
    write, so that concurrent writers of one tenant's master data take the tenant row's lock
    first (on PostgreSQL) rather than in differing orders."""
    wanted = set(tenant_ids)
    if not wanted:
        return
    written, bumped = _writes(session)
    written |= wanted
    if None in bumped:
        return
    todo = wanted - bumped
    if not todo:
        return
    stmt = update(_TENANT).values(data_epoch=_TENANT.c.data_epoch + 1)
    if None not in todo:
        stmt = stmt.where(_TENANT.c.id.in_(sorted(t for t in todo if t is not None)))
    session.connection().execute(stmt)
    bumped |= todo
    forget_epochs(session)


def rolled_back_savepoint(session: Session) -> None:
    """A savepoint was rolled back: a bump made in it may be undone, so the next write bumps
    again. (What the transaction wrote stays recorded: it may have written before the
    savepoint, and it still must not use the cache.)"""
    held = session.info.get(_WRITES)
    if held is not None:
        held[2].clear()


def wrote_master_data(session: Session, tenant_id: int) -> bool:
    """Whether this transaction has written master data of ``tenant_id``."""
    held = session.info.get(_WRITES)
    if held is None or held[0] is not session.get_transaction():
        return False
    return tenant_id in held[1] or None in held[1]


def _store(session: Session) -> OrderedDict[tuple[int, str], tuple[int, Any]]:
    engine = session.get_bind().engine
    store = _stores.get(engine)
    if store is None:
        with _lock:
            store = _stores.setdefault(engine, OrderedDict())
    return store


def cached(session: Session, name: str, loader: Callable[[], T]) -> T:
    """What ``loader()`` returns for the session's tenant, from this process's cache when the
    tenant's master data has not changed since it was stored. ``name`` says what it is
    (prefix it with the plugin's name); the loader follows the module's rules.

    A loader may also return an empty container that the caller fills as it reads rows (a
    dict of SKU ids by code, say): what it adds is kept with it. Without a tenant, or in a
    transaction that wrote the tenant's master data, the loader runs every time and its value
    is not kept.
    """
    # A transaction asks for cached values a score of times: once one call has found the
    # tenant, its epoch and the store (and that the transaction wrote no master data), the
    # next ones of the transaction take that as long as it holds (see _HITS).
    info = session.info
    hits = info.get(_HITS)
    if (
        hits is not None
        and hits[0] is session.get_transaction()
        and info.get(TENANT_KEY) == hits[1]
        and (not session.autoflush or session._is_clean())
    ):
        hit = hits[3].get((hits[1], name))
        if hit is not None and hit[0] == hits[2]:
            return cast(T, hit[1])
    tid = session_tenant(session)
    if tid is None:
        return loader()
    if _pending_master_data(session):
        session._autoflush()  # pending changes to master data count as written
    if wrote_master_data(session, tid):
        return loader()
    epochs = tenant_epochs(session, tid)
    if epochs is None:
        return loader()
    epoch = epochs[1]
    store = _store(session)
    if info.get(TENANT_KEY) == tid:  # (not for a tenant taken from the context)
        info[_HITS] = (session.get_transaction(), tid, epoch, store)
    key = (tid, name)
    hit = store.get(key)
    if hit is not None and hit[0] == epoch:
        return hit[1]
    value = loader()
    if wrote_master_data(session, tid):
        return value  # the loader wrote (created a missing row, say): not committed yet
    with _lock:
        store[key] = (epoch, value)
        store.move_to_end(key)
        while len(store) > MAX_ENTRIES:
            store.popitem(last=False)
    return value


def _pending_master_data(session: Session) -> bool:
    """Whether the session holds a new, changed or deleted master-data row not yet flushed
    (other pending changes wait for the session's next flush: flushing costs the same for
    few objects as for many)."""
    if not session.autoflush or session._is_clean():
        return False
    return any(
        isinstance(obj, MasterData)
        for pending in (session.new, session.dirty, session.deleted)
        for obj in pending
    )


def _owner(obj: Any) -> Any:
    return obj.tenant_id if isinstance(obj, TenantScoped) else getattr(obj, "id", None)


#: model -> (class, identity token) of its rows' identity keys
_KEY_HEADS: dict[type[Any], tuple[type[Any], Any]] = {}


def _key_head(cls: type[Any]) -> tuple[type[Any], Any]:
    """The parts of ``cls``'s identity keys other than the id (worked out once per model)."""
    head = _KEY_HEADS.get(cls)
    if head is None:
        klass, _, token = identity_key(cls, 0)
        head = _KEY_HEADS[cls] = (klass, token)
    return head


def kept_rows(session: Session, cls: type[M], ids: Iterable[int]) -> dict[int, M]:
    """The rows of the master-data model ``cls`` with ``ids`` that need no query: those in
    the session, and those kept across transactions (:func:`keep_rows`), merged into the session
    without a query. The caller reads the others and may keep them."""
    out: dict[int, M] = {}
    absent = []
    idmap = session.identity_map
    klass, token = _key_head(cls)
    for ident in ids:
        obj = idmap.get((klass, (ident,), token))
        if obj is None:
            absent.append(ident)
        elif instance_state(obj).expired:  # read again (None if it was deleted meanwhile)
            again = session.get(cls, ident)
            if again is not None:
                out[ident] = again
        else:
            out[ident] = obj
    if absent:  # (the session's own rows first: asking the cache flushes pending changes)
        kept: dict[tuple[type[Any], int], Any] = cached(session, "erp.rows", dict)
        merged = []
        for ident in absent:
            snap = kept.get((cls, ident))
            if snap is not None:
                merged.append(obj := session.merge(snap, load=False))
                out[ident] = obj
        if merged:
            _hold(session, merged)
    return out


#: ``Session.info`` key: (transaction, rows merged from the kept copies in it)
_MERGED = "erp_kept_merged"


def _hold(session: Session, objs: list[Any]) -> None:
    """Hold rows merged into the session until its transaction ends. The identity map holds
    objects weakly: a row the caller let go of (the tenant read for its currency, say) would
    be gone at the next look-up, and merged again, several times a transaction."""
    txn = session.get_transaction()
    held = session.info.get(_MERGED)
    if held is None or held[0] is not txn:
        session.info[_MERGED] = (txn, objs)
    else:
        held[1].extend(objs)


def keep_rows(session: Session, objs: Iterable[Any]) -> None:
    """Keep copies of master-data rows just read, as the database has them, for
    that function in later transactions (rows of the session's tenant only)."""
    tid = session_tenant(session)
    kept: dict[tuple[type[Any], int], Any] = cached(session, "erp.rows", dict)
    for obj in objs:
        state = sa_inspect(obj)
        if not isinstance(obj, MasterData) or _owner(obj) != tid:
            continue
        if state.persistent and not state.modified and len(kept) < MAX_ROWS:
            kept[(type(obj), state.identity[0])] = _detached_copy(obj)


def kept_copy(session: Session, cls: type[M], ident: int) -> M | None:
    """A master-data row of ``cls`` to read, with no query and without merging it into the
    session: the session's own object when it holds the row, else the copy kept across
    transactions (:func:`keep_rows`), else None (the caller reads the row, with
    :func:`kept_row`, say).

    A kept copy belongs to no session and is shared by every session of the process: read its
    columns only. Never change it, never hand it to a session (as a relationship's value, to
    ``add``, ``merge`` or ``delete``) and never follow its relationships (no session loads
    them). Merging a row into the session (:func:`kept_rows`) costs about
    as much as a small query; a call that only reads a few columns of a few rows need not pay
    it."""
    klass, token = _key_head(cls)
    obj = session.identity_map.get((klass, (ident,), token))
    if obj is not None and not instance_state(obj).expired:
        return obj
    if obj is None:  # (an expired object: the row may have changed; the caller reads it)
        kept: dict[tuple[type[Any], int], Any] = cached(session, "erp.rows", dict)
        snap = kept.get((cls, ident))
        if snap is not None:
            return snap
    return None


def kept_row(session: Session, cls: type[M], ident: int) -> M | None:
    """``session.get(cls, ident)`` for a master-data model, without a query when the row is
    kept across transactions."""
    obj = kept_rows(session, cls, (ident,)).get(ident)
    if obj is None:
        obj = session.get(cls, ident)
        if obj is not None:
            keep_rows(session, (obj,))
    return obj


def _detached_copy(obj: M) -> M:
    mapper = sa_inspect(type(obj))
    copy: M = mapper.class_manager.new_instance()
    for attr in mapper.column_attrs:
        set_committed_value(copy, attr.key, getattr(obj, attr.key))
    make_transient_to_detached(copy)
    return copy


def clear() -> None:
    """Drop every cached value of this process (tests; after restoring a database)."""
    with _lock:
        for store in _stores.values():
            store.clear()
