"""The Celery application factory.

Embedded default: the broker is a SQLite file through kombu's SQLAlchemy transport
(``sqla+sqlite:///...``, served by :mod:`erp_core.tasks.transport`), and ``erp serve`` runs a
worker with the scheduler beside the web server. Scale-out: set ``ERP_BROKER_URL=redis://...``
and run ``erp worker`` and ``erp beat`` processes.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

from celery import Celery

from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings

KERNEL_TASK_MODULES = (
    "erp_core.tasks.builtin",
    "erp_core.channels.sync",
    "erp_core.channels.inbox",
)

#: kombu transport serving ``sqla+...`` broker URLs.
EMBEDDED_TRANSPORT = "erp_core.tasks.transport:Transport"
_SQLA_PREFIXES = ("sqla+", "sqlalchemy+")

#: How often a worker on the embedded broker looks for new messages (seconds).
EMBEDDED_POLLING_INTERVAL = 0.25
#: Seconds after which a message taken by a worker that never acknowledged it (because the
#: worker died) is delivered again. Redis applies the same rule to its unacknowledged messages.
DEFAULT_VISIBILITY_TIMEOUT = 3600.0


def broker(settings: Settings) -> tuple[str, str | None]:
    """The broker URL and transport Celery/kombu should use for ``settings.broker_url``.

    ``sqla+<database url>`` selects the embedded transport with ``<database url>``.
    """
    url = settings.resolved_broker_url()
    for prefix in _SQLA_PREFIXES:
        if url.startswith(prefix):
            return url[len(prefix) :], EMBEDDED_TRANSPORT
    return url, None


def transport_options(
    settings: Settings, visibility_timeout: float | None = None
) -> dict[str, Any]:
    """Broker options; ``visibility_timeout`` matters to workers (they redeliver)."""
    vt = float(visibility_timeout or DEFAULT_VISIBILITY_TIMEOUT)
    if settings.broker_is_embedded:
        return {"polling_interval": EMBEDDED_POLLING_INTERVAL, "visibility_timeout": vt}
    if broker(settings)[0].startswith(("redis://", "rediss://")):
        # kombu looks for overdue unacknowledged messages every interval x throttle seconds
        # (100 s by default); keep that well under the visibility timeout.
        return {
            "visibility_timeout": vt,
            "unacked_restore_interval": max(1.0, min(60.0, vt / 4)),
            "unacked_restore_throttle": 1,
        }
    return {"visibility_timeout": vt}


def beat_schedule(registry: PluginRegistry) -> dict[str, dict[str, Any]]:
    """One fan-out entry per periodic task of every installed plugin.

    The fan-out (``erp.fanout``) sends the task to the tenants that have the plugin enabled at
    the moment it runs, so enabling or disabling a plugin needs no restart of the scheduler.
    """
    from erp_core.channels.inbox import SWEEP_EVERY_SECONDS, SWEEP_TASK
    from erp_core.channels.sync import SYNC_DUE_TASK, SYNC_EVERY_SECONDS

    out: dict[str, dict[str, Any]] = {
        # the kernel's channel sync: every active shop of every tenant that enabled its connector
        "core.channels.sync": {
            "task": SYNC_DUE_TASK,
            "schedule": timedelta(seconds=SYNC_EVERY_SECONDS),
            "options": {"expires": SYNC_EVERY_SECONDS},
        },
        # pushed messages a crash or a failure left unprocessed
        "core.channels.inbox": {
            "task": SWEEP_TASK,
            "schedule": timedelta(seconds=SWEEP_EVERY_SECONDS),
            "options": {"expires": SWEEP_EVERY_SECONDS},
        },
    }
    for m in registry.manifests():
        for p in m.periodic:
            out[f"{m.name}.{p.name}"] = {
                "task": "erp.fanout",
                "schedule": timedelta(seconds=p.every_seconds),
                "args": (m.name, p.task),
                "options": {"expires": max(p.every_seconds, 1.0) * 5},
            }
    return out


def import_task_modules(registry: PluginRegistry) -> list[str]:
    """Import the kernel's task modules and those of every installed plugin."""
    modules = list(KERNEL_TASK_MODULES)
    for m in registry.manifests():
        modules.extend(m.tasks)
    for mod in modules:
        importlib.import_module(mod)
    return modules


def make_celery(
    settings: Settings,
    registry: PluginRegistry,
    *,
    visibility_timeout: float | None = None,
) -> Celery:
    """A Celery app for ``settings`` with every installed plugin's tasks and schedules."""
    import_task_modules(registry)
    url, transport = broker(settings)
    app = Celery("erp", broker=url, set_as_current=True)
    var = settings.var_path
    var.mkdir(parents=True, exist_ok=True)
    app.conf.update(
        broker_transport=transport,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(settings, visibility_timeout),
        beat_schedule=beat_schedule(registry),
        beat_schedule_filename=str(var / "celerybeat-schedule"),
        worker_hijack_root_logger=False,
    )
    return app


def broker_ping(settings: Settings) -> None:
    """Raise if the broker cannot be reached."""
    from kombu import Connection

    url, transport = broker(settings)
    with Connection(
        url,
        transport=transport,
        transport_options=transport_options(settings),
        connect_timeout=3,
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
        if transport is not None:
            # Virtual transports connect lazily: touch the queue database for real.
            from sqlalchemy import text

            engine, _ = conn.default_channel._open()
            with engine.connect() as db:
                db.execute(text("SELECT 1"))
