"""The README's run command: ``erp serve --demo`` starts the sandboxes of the installed
connectors, and orders flow from the Tmall sandbox through review, routing, reservation,
shipping and write-back on their own, with the embedded worker and scheduler."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_orders_flow_by_themselves(tmp_path: Path) -> None:
    port = _free_port()
    db_path = tmp_path / "demo.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}
    env.update(
        ERP_DATABASE_URL=f"sqlite:///{db_path}",
        ERP_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        ERP_VAR_DIR=str(tmp_path / "var"),
        ERP_SECRET_KEY="demo-test-secret-key-3f9a",
    )
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "erp_core.cli", "serve", "--demo", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("the demo server did not start: " + (tmp_path / "serve.log").read_text())
        engine = create_engine(f"sqlite:///{db_path}")
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            with engine.connect() as c:
                seen = {
                    "orders": c.scalar(text("select count(*) from oms_order")) or 0,
                    "written_back": c.scalar(
                        text("select count(*) from oms_parcel where writeback = 'done'")
                    )
                    or 0,
                    "held": c.scalar(text("select count(*) from oms_order where status = 'held'"))
                    or 0,
                    "revenue": c.scalar(
                        text("select count(*) from ledger_entry where idempotency_key like :k"),
                        {"k": "oms:order:%:revenue"},
                    )
                    or 0,
                }
            if seen["written_back"] >= 3 and seen["held"] >= 1 and seen["revenue"] >= 3:
                break
            time.sleep(2)
        engine.dispose()
        out = (tmp_path / "serve.log").read_text()
        assert seen["written_back"] >= 3 and seen["revenue"] >= 3, (seen, out[-3000:])
        assert seen["held"] >= 1, seen  # address errors, unmapped SKUs, refunds
        assert "Tmall / Taobao sandbox at http://127.0.0.1:" in out
        assert "Alipay sandbox at http://127.0.0.1:" in out
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def test_the_demo_driver_has_its_sandboxes_forget_old_orders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A demo runs for days: every ``DEMO_FORGET_SECONDS`` the driver has each sandbox forget
    the orders unchanged for ``DEMO_SANDBOX_RETENTION`` (``Sandbox.forget``), and a failing
    step does not stop it."""
    from datetime import UTC, datetime

    from erp_core import demo

    monkeypatch.setattr(demo, "DEMO_FIRST_STEP_AFTER", 0.0)
    monkeypatch.setattr(demo, "DEMO_STEP_SECONDS", 0.0)
    monkeypatch.setattr(demo, "DEMO_FORGET_SECONDS", 0.0)
    nothing: Any = None  # the driver uses no database
    platforms = demo.DemoPlatforms(nothing, nothing, nothing)

    class Box:
        steps = 0
        cutoffs: list[datetime] = []

        def demo_step(self, hook: str) -> int:
            self.steps += 1
            if self.steps == 2:
                raise RuntimeError("the platform had a bad moment")
            if self.steps == 4:
                platforms._stop.set()
            return 0

        def forget(self, before: datetime) -> int:
            self.cutoffs.append(before)
            return 0

    box = Box()
    platforms._drive(box, "http://127.0.0.1:9/hooks/tmall/1")
    assert box.steps == 4
    assert len(box.cutoffs) == 3  # not after the failed step
    ago = datetime.now(UTC) - box.cutoffs[-1]
    assert abs(ago - demo.DEMO_SANDBOX_RETENTION).total_seconds() < 60
