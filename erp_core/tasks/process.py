"""Running workers and the scheduler: the ``erp worker``, ``erp beat`` and ``erp serve`` parts."""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from erp_core.db.session import Database
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings

log = logging.getLogger(__name__)

#: Seconds ``erp serve`` gives its embedded worker to finish running tasks when it stops.
EMBEDDED_STOP_TIMEOUT = 20.0


#: New objects (containers) between two of the garbage collector's passes over the youngest
#: ones, once a process has settled (Python's default: 700).
YOUNG_COLLECTION_EVERY = 20_000


def settle_heap() -> int:
    """Take what the process has loaded so far out of the garbage collector's full passes,
    and make its passes over new objects rarer; returns how many objects were settled.

    A process that has imported the kernel, its plugins, Celery and the web framework holds
    about 100,000 objects that live as long as it does. The collector's full passes, which a
    busy worker makes every few hundred orders, would walk them all each time (about 35 ms
    on a 2-core machine). Called once the process has started up; a forked child inherits
    what its parent settled, and the copy-on-write pages of that heap stay shared.

    A piece of work (a page of orders) makes and drops objects by the hundred thousand. With
    Python's default threshold the collector looks at the youngest every 700 new objects
    (net of those freed), and those still alive at that moment (rows, sessions, statements of
    the work under way) move on to the older generations, which are then walked again, up to
    full passes. Every :data:`YOUNG_COLLECTION_EVERY` instead, most of them are already gone:
    in the order bench's batch mode (3,000 orders) the collector ran 893 times for 0.23 s of
    11 s with the default, and twice for 0.01 s with this. Cyclic garbage waits a little
    longer to be freed (a few MB at most); nothing else changes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    return gc.get_freeze_count()


def run_worker(
    settings: Settings,
    db: Database,
    registry: PluginRegistry,
    *,
    beat: bool = False,
    concurrency: int = 2,
    pool: str = "threads",
    visibility_timeout: float | None = None,
    parent_pid: int | None = None,
) -> None:
    """Run a Celery worker (and with ``beat`` the scheduler) in this process until stopped."""
    from celery.signals import worker_process_init

    from erp_core.tasks.app import make_celery
    from erp_core.tasks.runtime import Runtime, set_runtime

    if parent_pid is not None:
        watch_parent(parent_pid)
    set_runtime(Runtime(settings, db, registry))

    @worker_process_init.connect(weak=False)
    def _forked(**_: object) -> None:
        # A prefork child must not share its parent's database connections.
        db.engine.dispose(close=False)

    app = make_celery(settings, registry, visibility_timeout=visibility_timeout)
    argv = [
        "worker",
        f"--loglevel={settings.log_level}",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--hostname=erp-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if beat:
        argv.append("--beat")
    settle_heap()
    app.worker_main(argv)


def run_beat(settings: Settings, registry: PluginRegistry) -> None:
    """Run the scheduler alone in this process until stopped."""
    from erp_core.tasks.app import make_celery

    app = make_celery(settings, registry)
    app.start(["beat", f"--loglevel={settings.log_level}"])


def watch_parent(parent_pid: int, interval: float = 0.5) -> threading.Thread:
    """Stop this process (as SIGTERM does) when the process ``parent_pid`` is no longer its
    parent: an embedded worker must not outlive ``erp serve``, however that ended."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        log.warning("parent process %s is gone; stopping the worker", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(EMBEDDED_STOP_TIMEOUT)
        log.error("worker did not stop within %ss; exiting", EMBEDDED_STOP_TIMEOUT)
        os._exit(1)

    t = threading.Thread(target=watch, name="erp-parent-watch", daemon=True)
    t.start()
    return t


def embedded_worker_command() -> list[str]:
    return [
        sys.executable,
        "-m",
        "erp_core.cli",
        "worker",
        "--beat",
        f"--parent-pid={os.getpid()}",
    ]


@contextmanager
def embedded_worker() -> Iterator[subprocess.Popen[bytes]]:
    """Run ``erp worker --beat`` as a child process for as long as the block runs.

    The child stops when the block ends (also through an exception or SIGTERM, see
    :func:`exit_on_sigterm`), and on its own if this process dies without stopping it.
    """
    child = subprocess.Popen(embedded_worker_command(), env=os.environ.copy())
    try:
        yield child
    finally:
        stop_child(child)


def stop_child(child: subprocess.Popen[bytes], timeout: float = EMBEDDED_STOP_TIMEOUT) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("worker %s did not stop within %ss; killing it", child.pid, timeout)
        child.kill()
        child.wait()


@contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit`` so that ``finally`` blocks run.

    uvicorn handles SIGTERM itself while it serves, then raises the signal again once it has
    shut down; without a handler of ours that second SIGTERM kills the process on the spot,
    before it could stop its embedded worker.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
