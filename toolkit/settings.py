"""Project settings from ``./trace2skill.toml``: the defaults of every patch application.

The ``[patch]`` table sets ``max-skill-lines``, ``max-reference-lines`` and ``append-mode``
for every place a patch is applied (``patch apply``/``check``, the analysts, the merge
operator, ablation, pruning), so a project with a long official skill raises its budget once.
Command-line flags still win where a command has them; an explicit ``budgets=`` or
``append_mode=`` argument wins in the API.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from toolkit.errors import ToolkitError

CONFIG_FILE = "trace2skill.toml"
PATCH_KEYS = ("max-skill-lines", "max-reference-lines", "append-mode")


class PatchSettings(BaseModel):
    """The ``[patch]`` table; None: the built-in default."""

    max_skill_lines: int | None = None
    max_reference_lines: int | None = None
    append_mode: str | None = None


def read_patch_table(path: Path) -> PatchSettings:
    """Read and check the ``[patch]`` table of ``path``.

    Raises:
        ToolkitError: the file cannot be read or parsed, or the table has unknown keys or
            bad values (one line naming the file and the key).
    """
    from toolkit.patch import APPEND_MODES

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ToolkitError(f"cannot read {path}: {exc}") from None
    table: Any = data.get("patch", {})
    if not isinstance(table, dict):
        raise ToolkitError(f"{path}: [patch] must be a table")
    unknown = sorted(set(table) - set(PATCH_KEYS))
    if unknown:
        raise ToolkitError(
            f"{path}: unknown key(s) in [patch]: {', '.join(unknown)} "
            f"(known: {', '.join(PATCH_KEYS)})"
        )
    for key in ("max-skill-lines", "max-reference-lines"):
        value = table.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ToolkitError(f"{path}: [patch] {key} must be a whole number >= 1")
    mode = table.get("append-mode")
    if mode is not None and mode not in APPEND_MODES:
        raise ToolkitError(
            f"{path}: [patch] append-mode {mode!r} is not one of {', '.join(APPEND_MODES)}"
        )
    return PatchSettings(**{k.replace("-", "_"): v for k, v in table.items()})


@lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int) -> PatchSettings:
    return read_patch_table(Path(path))


def project_patch_settings() -> PatchSettings:
    """The ``[patch]`` table of ``./trace2skill.toml`` (empty settings when there is none)."""
    path = Path(CONFIG_FILE).resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return PatchSettings()
    return _cached(str(path), mtime)
