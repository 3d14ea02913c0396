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
