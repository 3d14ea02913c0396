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
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(
        prefix=prefix if prefix is not None else f".{path.name}.", suffix=suffix, dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
