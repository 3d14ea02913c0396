"""Atomic file replacement: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(
    path: Path, data: bytes | str, *, prefix: str | None = None, suffix: str = ".tmp"
) -> None:
    """Write ``data`` (str is UTF-8 encoded) to ``path`` through a temp file and ``os.replace``.

    The temp file lives in the same directory (so the rename is atomic) and is removed if
    anything fails, a KeyboardInterrupt or a full disk included. The directory must exist.
    The file keeps the mode it had, else gets 0644 as the run's appended files do (the temp
    file's own 0600 made manifest.json unreadable to a group that reads the run).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(
        prefix=prefix if prefix is not None else f".{path.name}.", suffix=suffix, dir=path.parent
    )
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
