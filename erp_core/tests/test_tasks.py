"""Background tasks with real worker processes: tenant tasks, periodic fan-out, late
acknowledgement and the embedded worker of ``erp serve``.

Every worker test runs against the embedded broker (SQLite through kombu's SQLAlchemy
transport) and, when ``ERP_TEST_REDIS_URL`` names a Redis server, against Redis as well.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import httpx
import pytest
from erp_test_alpha.models import AlphaNote
from sqlalchemy import func, select, text

from erp_core.db.session import system_access
from erp_core.tasks.app import beat_schedule, make_celery
from erp_core.tasks.base import MissingTenantError, tenant_task
from erp_core.tasks.enqueue import enqueue
from erp_core.tenancy.models import Tenant
from erp_core.tenancy.service import disable_plugin, enable_plugin

WAIT = 30.0  # seconds: the longest any test waits for a worker to do something

REDIS_URL = os.environ.get("ERP_TEST_REDIS_URL")


# --- processes -----------------------------------------------------------------------------


class ErpProcess:
    """An ``erp`` command running as a child process, its output captured in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "erp_core.cli", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_output(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            m = re.search(pattern, self.output())
            if m:
                found.append(m)
            return m is not None

        wait_until(seen, f"{pattern!r} in the output of erp {' '.join(self.args)}", timeout)
        return found[0]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def broker_url(request: pytest.FixtureRequest, erp_settings: Any) -> str:
    if request.param == "redis":
        if not REDIS_URL:
            pytest.skip("ERP_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/1)")
        return REDIS_URL
    if erp_settings.broker_is_embedded:
        return str(erp_settings.broker_url)
    return f"sqla+sqlite:///{erp_settings.var_path / 'broker.sqlite'}"


@pytest.fixture
def settings(erp_settings: Any, broker_url: str) -> Any:
    return erp_settings.model_copy(update={"broker_url": broker_url})


@pytest.fixture
def celery_app(settings: Any, erp_registry: Any) -> Any:
    """The producing side; the broker queue starts empty."""
    app = make_celery(settings, erp_registry)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
        if settings.broker_url.startswith("redis"):
            conn.default_channel.client.delete("unacked", "unacked_index", "unacked_mutex")
    yield app
    app.close()


@pytest.fixture
def erp_env(settings: Any, pytestconfig: pytest.Config) -> dict[str, str]:
    """The environment of an ``erp`` child process using the test database and broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}
    env.update(
        ERP_DATABASE_URL=settings.resolved_database_url(),
        ERP_BROKER_URL=settings.resolved_broker_url(),
        ERP_VAR_DIR=str(settings.var_path),
        ERP_SECRET_KEY=settings.secret_key,
        ERP_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        # Child processes would compile every module on every start; keep their bytecode in
        # pytest's cache folder instead (nothing is written next to the sources).
        cache = getattr(pytestconfig, "cache", None)  # None with -p no:cacheprovider
        folder = cache.mkdir("erp-pycache") if cache else settings.var_path / "pycache"
        env["PYTHONPYCACHEPREFIX"] = str(folder)
    return env


@pytest.fixture
def run_erp(
    erp_db: Any, erp_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., ErpProcess]]:
    """Factory: start ``erp <args>``; every process is stopped after the test (before the
    database is emptied) and its output printed, which pytest shows when the test failed."""
    started: list[ErpProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ErpProcess:
        name = f"{len(started)}-{args[0]}.log"
        p = ErpProcess(list(args), env or erp_env, tmp_path / name)
        started.append(p)
        return p

    yield start
    for p in started:
        code = p.stop()
        print(f"----- erp {' '.join(p.args)} (pid {p.pid}, exit {code}) -----")
        print(p.output())


# --- database helpers ----------------------------------------------------------------------


def notes(erp_db: Any, tenant_id: int) -> dict[str, list[str]]:
    """The notes of one tenant: text -> tags of every note with that text."""
    out: dict[str, list[str]] = {}
    with erp_db.session(tenant_id) as s:
        for n in s.scalars(select(AlphaNote).order_by(AlphaNote.id)):
            out.setdefault(n.text, []).append(n.tags)
    return out


def ticks(erp_db: Any, tenant_id: int) -> int:
    """How many times test_alpha.tick ran for the tenant (the count kept on its note)."""
    tags = notes(erp_db, tenant_id).get("tick")
    if not tags:
        return 0
    assert len(tags) == 1, f"tenant {tenant_id} has {len(tags)} tick notes"
    return int(tags[0])


def all_notes_with(erp_db: Any, text_: str) -> int:
    with erp_db.session() as s, system_access(s):
        return int(s.scalar(select(func.count()).where(AlphaNote.text == text_)) or 0)


def set_plugin(erp_db: Any, erp_registry: Any, tenant_id: int, on: bool) -> None:
    with erp_db.session() as s, s.begin():
        tenant = s.get(Tenant, tenant_id)
        assert tenant is not None
        if on:
            enable_plugin(s, erp_registry, tenant, "test_alpha", actor="test")
        else:
            disable_plugin(s, erp_registry, tenant, "test_alpha", actor="test")


def succeeded(task_id: str) -> str:
    return rf"Task [\w.]+\[{task_id}\] succeeded"


# --- task declaration (no worker needed) ---------------------------------------------------


def test_tenant_tasks_are_acknowledged_late_and_need_a_tenant(erp_settings, erp_registry):
    from erp_test_alpha.tasks import tick, write_note

    app = make_celery(erp_settings, erp_registry)
    try:
        assert app.conf.task_acks_late is True
        assert app.conf.task_reject_on_worker_lost is True
        assert app.conf.worker_prefetch_multiplier == 1
        for task in (write_note, tick, app.tasks["test_alpha.write_note"]):
            assert task.acks_late is True
            assert task.reject_on_worker_lost is True
            assert task.erp_plugin == "test_alpha"
        assert app.tasks["erp.fanout"].acks_late is True
        # the periodic task reaches the scheduler as a fan-out over the enabled tenants
        entry = beat_schedule(erp_registry)["test_alpha.tick"]
        assert entry["task"] == "erp.fanout"
        assert entry["args"] == ("test_alpha", "test_alpha.tick")
        assert entry["schedule"].total_seconds() == 1.0
        assert app.conf.beat_schedule["test_alpha.tick"] == entry
    finally:
        app.close()

    with pytest.raises(MissingTenantError, match="sent without a tenant"):
        write_note("no tenant")
    with pytest.raises(ValueError, match="acks_late must stay on"):
        tenant_task(name="x.y", plugin=None, acks_late=False)
    with pytest.raises(TypeError, match="tenant_id must be an int"):
        enqueue(app, "test_alpha.write_note", "1", "x")  # type: ignore[arg-type]


def test_embedded_queue_keeps_what_a_live_worker_holds_and_deletes_what_it_acks(tmp_path):
    """The embedded transport on its own: a message held (not yet acknowledged) by a live
    consumer stays with it however long the task takes; acknowledging deletes it."""
    from kombu import Connection

    from erp_core.tasks.app import EMBEDDED_TRANSPORT

    url = f"sqlite:///{tmp_path / 'queue.sqlite'}"
    opts = {"visibility_timeout": 1.0, "polling_interval": 0.05}

    def connect() -> Connection:
        return Connection(url, transport=EMBEDDED_TRANSPORT, transport_options=opts)

    with connect() as producer, connect() as holder, connect() as other:
        producer.SimpleQueue("jobs").put({"n": 1})
        held = holder.SimpleQueue("jobs").get(timeout=5)
        assert held.payload == {"n": 1}
        # three visibility timeouts later the other consumer still gets nothing: the holder
        # is alive and keeps refreshing its claim
        with pytest.raises(Empty):
            other.SimpleQueue("jobs").get(timeout=3)
        held.ack()
        engine = holder.default_channel._engine()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM kombu_message")).scalar() == 0


# --- a real worker -------------------------------------------------------------------------


def test_worker_runs_task_for_enabled_tenant_only(
    make_tenant, erp_db, celery_app, run_erp, broker_url
):
    acme = make_tenant("acme", plugins=("test_alpha",))
    bravo = make_tenant("bravo")  # has not enabled test_alpha
    worker = run_erp("worker", "--concurrency=4")

    ok = enqueue(celery_app, "test_alpha.write_note", acme.id, "from the worker")
    # the same task three times more: it is idempotent, and the runs (on four threads) do
    # not overlap, so the body's "is the note there already?" check cannot race
    again = [
        enqueue(celery_app, "test_alpha.write_note", acme.id, "from the worker") for _ in range(3)
    ]
    absent = enqueue(celery_app, "test_alpha.write_note", bravo.id, "from the worker")
    no_tenant = celery_app.send_task("test_alpha.write_note", args=("no tenant",)).id

    for task_id in (ok, *again, absent):
        worker.wait_for_output(succeeded(task_id))
    worker.wait_for_output(
        rf"Task test_alpha.write_note\[{no_tenant}\] raised unexpected: MissingTenantError"
    )
    out = worker.output()
    assert "was sent without a tenant" in out
    assert (
        f"task test_alpha.write_note skipped: plugin test_alpha not enabled for tenant {bravo.id}"
    ) in out

    assert notes(erp_db, acme.id)["from the worker"] == [""]  # exactly one note
    assert notes(erp_db, bravo.id) == {}
    assert all_notes_with(erp_db, "no tenant") == 0


def test_periodic_task_follows_enablement_without_restart(
    make_tenant, erp_db, erp_registry, celery_app, run_erp, broker_url
):
    acme = make_tenant("acme", plugins=("test_alpha",))
    bravo = make_tenant("bravo")
    if broker_url.startswith("sqla+"):
        run_erp("worker", "--beat")  # the embedded set-up: one process
    else:
        run_erp("worker")  # scale-out: worker and scheduler are separate processes
        run_erp("beat")

    wait_until(lambda: ticks(erp_db, acme.id) >= 2, "two ticks for acme")
    assert ticks(erp_db, bravo.id) == 0

    # switch the plugin over while the worker and the scheduler keep running
    set_plugin(erp_db, erp_registry, acme.id, on=False)
    set_plugin(erp_db, erp_registry, bravo.id, on=True)

    wait_until(lambda: ticks(erp_db, bravo.id) >= 1, "a tick for bravo")
    acme_after = ticks(erp_db, acme.id)
    wait_until(lambda: ticks(erp_db, bravo.id) >= 3, "more ticks for bravo")
    assert ticks(erp_db, acme.id) == acme_after, "acme still gets ticks after disabling"


TAKE_AND_DIE = """
import os
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import load_settings
from erp_core.tasks.app import make_celery

app = make_celery(load_settings(), PluginRegistry.discover())
with app.connection_for_read() as conn:
    message = conn.SimpleQueue("celery").get(timeout=20)
    print("took", message.headers["id"], flush=True)
    os._exit(9)  # dies holding the message, without acknowledging it
"""


def test_task_of_a_worker_that_died_is_delivered_again(
    make_tenant, erp_db, erp_env, celery_app, run_erp, broker_url
):
    acme = make_tenant("acme", plugins=("test_alpha",))
    task_id = enqueue(celery_app, "test_alpha.write_note", acme.id, "survivor")
    dead = subprocess.run(
        [sys.executable, "-c", TAKE_AND_DIE],
        env=erp_env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert dead.returncode == 9, dead.stdout + dead.stderr
    assert f"took {task_id}" in dead.stdout
    assert "survivor" not in notes(erp_db, acme.id)

    worker = run_erp("worker", "--visibility-timeout=2")
    worker.wait_for_output(succeeded(task_id))
    assert notes(erp_db, acme.id)["survivor"] == [""]

    if broker_url.startswith("sqla+"):
        # acknowledged messages are deleted from the embedded queue, not kept for ever
        from sqlalchemy import create_engine

        engine = create_engine(broker_url.removeprefix("sqla+"))

        def queue_empty() -> bool:
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM kombu_message")).scalar() == 0

        try:  # the worker acknowledges after it logs the success: give it a moment
            wait_until(queue_empty, "the acknowledged message to leave the queue")
        finally:
            engine.dispose()


# --- erp serve -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(run_erp: Callable[..., ErpProcess]) -> tuple[ErpProcess, int, str]:
    port = free_port()
    serve = run_erp("serve", f"--port={port}")
    child = int(serve.wait_for_output(r"embedded worker and scheduler started \(pid (\d+)\)")[1])
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, "erp serve to answer /healthz")
    return serve, child, base


@pytest.mark.parametrize("broker_url", ["embedded"], indirect=True)
def test_serve_runs_embedded_worker_and_stops_it(make_tenant, erp_db, celery_app, run_erp):
    acme = make_tenant("acme", plugins=("test_alpha",))
    serve, child, base = start_serve(run_erp)
    assert alive(child)

    ready = httpx.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}

    enqueue(celery_app, "test_alpha.write_note", acme.id, "via serve")
    wait_until(lambda: "via serve" in notes(erp_db, acme.id), "the embedded worker")
    # ... and the scheduler runs beside it
    wait_until(lambda: ticks(erp_db, acme.id) >= 1, "a tick from the embedded scheduler")

    assert serve.stop(signal.SIGTERM) == 128 + signal.SIGTERM  # it stopped by itself
    assert not alive(child), "the embedded worker outlived erp serve"


@pytest.mark.parametrize("broker_url", ["embedded"], indirect=True)
def test_embedded_worker_stops_when_serve_is_killed(erp_db, run_erp):
    serve, child, _ = start_serve(run_erp)
    serve.stop(signal.SIGKILL)  # no chance to stop its worker
    wait_until(lambda: not alive(child), "the orphaned worker to stop by itself", 20)


def test_settle_heap_takes_what_is_loaded_out_of_full_collections() -> None:
    """Workers and the web server settle their start-up heap: the collector's full passes no
    longer walk it (an object made before is not among the objects it tracks)."""
    import gc

    from erp_core.tasks.process import YOUNG_COLLECTION_EVERY, settle_heap

    before = [object()]  # a list: tracked by the collector
    assert any(o is before for o in gc.get_objects())
    thresholds = gc.get_threshold()
    gc.set_threshold(700, *thresholds[1:])  # Python's default (another test may have settled)
    try:
        assert settle_heap() >= 1
        assert not any(o is before for o in gc.get_objects())
        after = [object()]
        assert any(o is after for o in gc.get_objects())
        # the youngest generation is collected less often, the older ones as before
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
