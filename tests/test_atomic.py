from pathlib import Path

import pytest

from toolkit import atomic
from toolkit.atomic import write_atomic


def test_write_atomic_replaces_and_encodes(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old", encoding="utf-8")
    write_atomic(target, "néw")
    assert target.read_bytes() == "néw".encode()
    write_atomic(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_a_new_file_is_0644_and_a_replaced_one_keeps_its_mode(tmp_path: Path) -> None:
    """manifest.json and splits.json were 0600 (the temp file's mode), the run's other files
    0644 (found by a new-user trial)."""
    fresh = tmp_path / "manifest.json"
    write_atomic(fresh, "{}")
    assert fresh.stat().st_mode & 0o777 == 0o644
    fresh.chmod(0o640)
    write_atomic(fresh, "{ }")
    assert fresh.stat().st_mode & 0o777 == 0o640


def test_failed_replace_keeps_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    target.write_text("old", encoding="utf-8")

    def boom(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new", prefix=".tmp-", suffix=".json")
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
