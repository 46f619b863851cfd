"""The Celery application factory.

Embedded default: the broker is a SQLite file through kombu's SQLAlchemy transport, and
``erp serve`` runs a worker with the scheduler beside the web server. Scale-out: set
``ERP_BROKER_URL=redis://...`` and run ``erp worker`` and ``erp beat`` processes.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

from celery import Celery

from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings

KERNEL_TASK_MODULES = ("erp_core.tasks.builtin",)


def beat_schedule(registry: PluginRegistry) -> dict[str, dict[str, Any]]:
    """One fan-out entry per periodic task of every installed plugin."""
    out: dict[str, dict[str, Any]] = {}
    for m in registry.manifests():
        for p in m.periodic:
            out[f"{m.name}.{p.name}"] = {
                "task": "erp.fanout",
                "schedule": timedelta(seconds=p.every_seconds),
                "args": (m.name, p.task),
                "options": {"expires": max(p.every_seconds, 1.0) * 5},
            }
    return out


def make_celery(settings: Settings, registry: PluginRegistry) -> Celery:
    modules = list(KERNEL_TASK_MODULES)
    for m in registry.manifests():
        modules.extend(m.tasks)
    for mod in modules:
        importlib.import_module(mod)
    app = Celery("erp", broker=settings.resolved_broker_url(), set_as_current=True)
    var = settings.var_path
    var.mkdir(parents=True, exist_ok=True)
    app.conf.update(
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
        broker_transport_options={"polling_interval": 0.2}
        if settings.broker_is_embedded
        else {"visibility_timeout": 3600},
        beat_schedule=beat_schedule(registry),
        beat_schedule_filename=str(var / "celerybeat-schedule"),
        worker_hijack_root_logger=False,
    )
    return app


def broker_ping(settings: Settings) -> None:
    """Raise if the broker cannot be reached."""
    from kombu import Connection

    with Connection(settings.resolved_broker_url(), connect_timeout=3) as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
