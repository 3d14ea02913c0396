"""Where suites read their data: parameter, environment, ``../shared/data`` or the vendored slice.

The vendored slice (``toolkit/tasks/data/``) mirrors the layout of the shared data folder, so
the same loaders read both; it ships as package data so an installed toolkit can run a demo.
"""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.tasks.base import TaskError

#: Environment variable that overrides the data root.
DATA_DIR_ENV = "TRACE2SKILL_DATA_DIR"
#: The small slice of each benchmark shipped with the package.
VENDORED_DATA_DIR = Path(__file__).resolve().parent / "data"
#: The full shared data folder, next to the repository checkout.
SHARED_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Pick the data root: ``data_dir``, else ``$TRACE2SKILL_DATA_DIR``, else ``../shared/data``
    relative to the repository when present, else the vendored slice.

    Raises:
        TaskError: when an explicitly given directory does not exist.
    """
    if data_dir is not None:
        chosen, origin = Path(data_dir), "the data_dir parameter"
    elif os.environ.get(DATA_DIR_ENV):
        chosen, origin = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    elif SHARED_DATA_DIR.is_dir():
        return SHARED_DATA_DIR
    else:
        return VENDORED_DATA_DIR
    if not chosen.is_dir():
        raise TaskError(f"data directory from {origin} does not exist: {chosen}")
    return chosen.resolve()
