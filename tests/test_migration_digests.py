"""Released migrations are never edited.

A deployment that applied a revision never runs it again, so an edit after release changes the
schema of new deployments only and the two drift apart without a trace. ``migrations.sha256``
at the repository's root records every migration file (``sha256sum`` format, so
``sha256sum -c migrations.sha256`` checks them too). A change of schema is a new revision; a
new revision is added to the file with ``sha256sum PATH >> migrations.sha256``."""

from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = "migrations.sha256"
#: where migration files live: the kernel's, the workspace's distributions' and test plugins'
TREES = ("erp_core", "plugins", "connectors", "themes", "tests")


def problems(root: Path) -> list[str]:
    """What is wrong between the migration files under ``root`` and its ``LOCK``."""
    out: list[str] = []
    recorded: dict[str, str] = {}
    for n, line in enumerate((root / LOCK).read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, path = line.partition("  ")
        if not sep or len(digest) != 64 or path in recorded:
            out.append(f"{LOCK}:{n}: not 'SHA256  PATH' or listed twice: {line!r}")
        recorded[path] = digest
    present = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for tree in TREES
        for p in sorted((root / tree).glob("**/migrations/versions/*.py"))
        if ".venv" not in p.parts
    }
    for path, digest in sorted(recorded.items()):
        if path not in present:
            out.append(f"{path}: released and then removed; deployments still record it")
        elif present[path] != digest:
            out.append(
                f"{path}: released and then edited; a deployment that applied it never sees "
                "the edit: restore it and write a new revision instead"
            )
    for path in sorted(set(present) - set(recorded)):
        out.append(f"{path}: not recorded; once final, run `sha256sum {path} >> {LOCK}`")
    return out


def test_every_migration_is_recorded_and_unchanged() -> None:
    assert problems(ROOT) == []


def test_edits_removals_and_new_revisions_are_each_reported(tmp_path: Path) -> None:
    versions = tmp_path / "plugins" / "shop" / "migrations" / "versions"
    versions.mkdir(parents=True)
    (versions / "s1.py").write_text('revision = "s1"\n')
    (versions / "s2.py").write_text('revision = "s2"\n')
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(tmp_path)}"
        for p in sorted(versions.glob("*.py"))
    ]
    (tmp_path / LOCK).write_text("\n".join(lines) + "\n")
    assert problems(tmp_path) == []
    (versions / "s1.py").write_text('revision = "s1"  # fixed\n')
    (versions / "s2.py").unlink()
    (versions / "s3.py").write_text('revision = "s3"\n')
    found = problems(tmp_path)
    assert [f.split(":")[0] for f in found] == [
        "plugins/shop/migrations/versions/s1.py",
        "plugins/shop/migrations/versions/s2.py",
        "plugins/shop/migrations/versions/s3.py",
    ]
    assert "edited" in found[0] and "removed" in found[1] and "not recorded" in found[2]
