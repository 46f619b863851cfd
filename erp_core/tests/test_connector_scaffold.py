"""``erp connectors new``: the scaffolded connector is clean and passes the conformance kit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from erp_core.channels.scaffold import ScaffoldError, scaffold
from erp_core.cli import main

BIN = Path(sys.executable).parent


def _installed_view(tmp_path: Path, dist: Path, name: str) -> Path:
    """Make the scaffolded distribution importable and discoverable (its entry point) without
    installing it into the test environment: a dist-info folder beside a link to the package."""
    site = tmp_path / "site"
    info = site / f"erp_connector_{name}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: erp-connector-{name}\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[erp.connectors]\n{name} = erp_connector_{name}.manifest:MANIFEST\n"
    )
    (site / f"erp_connector_{name}").symlink_to(dist / f"erp_connector_{name}")
    return site


def test_scaffold_passes_the_conformance_kit(tmp_path: Path) -> None:
    dist = tmp_path / "acme"
    res = CliRunner().invoke(
        main, ["connectors", "new", "acme_mall", "--dir", str(dist), "--title", "Acme Mall"]
    )
    assert res.exit_code == 0, res.output
    assert "Wrote 7 files" in res.output
    pkg = dist / "erp_connector_acme_mall"
    assert "class AcmeMallChannel(SalesChannel)" in (pkg / "channel.py").read_text()
    assert 'title="Acme Mall"' in (pkg / "manifest.py").read_text()
    assert '"erp.connectors"' in (dist / "pyproject.toml").read_text()

    lint = subprocess.run(
        [str(BIN / "ruff"), "check", "--no-cache", "."],
        cwd=dist,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    typed = subprocess.run(
        [str(BIN / "mypy"), "--no-incremental", "."],
        cwd=dist,
        capture_output=True,
        text=True,
    )
    assert typed.returncode == 0, typed.stdout + typed.stderr

    site = _installed_view(tmp_path, dist, "acme_mall")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}
    env["PYTHONPATH"] = str(site)  # SQLite in the run's own temp folder: never our database
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(dist),
            str(dist / "tests"),
        ],
        cwd=dist,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Acme", "must be 2-31 characters"),
        ("a", "must be 2-31 characters"),
        ("acme-mall", "must be 2-31 characters"),
        ("core", "reserved"),
    ],
)
def test_scaffold_refuses_bad_names(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(ScaffoldError, match=message):
        scaffold(name, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_scaffold_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    res = CliRunner().invoke(main, ["connectors", "new", "taken", "--dir", str(target)])
    assert res.exit_code != 0
    assert "already exists" in res.output
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    res = CliRunner().invoke(
        main, ["connectors", "new", "quoted", "--dir", str(tmp_path / "q"), "--title", 'a"b']
    )
    assert res.exit_code != 0 and "quotes" in res.output
