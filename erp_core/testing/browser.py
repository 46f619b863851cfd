"""Helpers for browser tests of the kernel and of plugins: a real ``erp serve`` on a free port
against the test database, and Debian's Chromium for Playwright (never a browser downloaded by
Playwright)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SKIP_REASON = (
    "browser tests need Debian's Chromium at /usr/bin/chromium "
    "(apt-get install chromium; scripts/test-services installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_erp(settings: Any, log_path: Path) -> Iterator[str]:
    """``erp serve --no-worker`` in a process of its own on the test database; yields its base
    URL once ``/healthz`` answers (the server's output goes to ``log_path``)."""
    port = free_port()
    env = {
        **os.environ,
        "ERP_DATABASE_URL": settings.resolved_database_url(),
        "ERP_BROKER_URL": settings.resolved_broker_url(),
        "ERP_VAR_DIR": str(settings.var_path),
        "ERP_SECRET_KEY": "e2e-secret",
        "ERP_LOG_LEVEL": "WARNING",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "erp_core.cli", "serve", "--no-worker", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            else:
                raise AssertionError(log_path.read_text())
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=15)
