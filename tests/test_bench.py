"""The order bench still runs the whole pipeline (a few orders, each mode): its figures are
read in the issues' notes, so a change that broke it would go unseen until then."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "orders.py"


@pytest.mark.parametrize("mode", ["batch", "single"])
def test_the_order_bench_takes_every_order_through(mode: str) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--n", "25", "--mode", mode, "--page", "10", "--calls"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ship-back calls accepted by the sandbox: 25" in run.stdout
    [result] = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert re.fullmatch(
        rf"RESULT bench=orders mode={mode} n=25 db=sqlite seconds=[\d.]+ orders_per_s=[\d.]+ "
        r"busy_cores=[\d.]+ calls_per_order=\d+",
        result,
    ), result
    for stage in ("ingest", "review+route+reserve", "ship+ledger", "write-back"):
        assert f"stage {stage}: " in run.stdout
