"""Pins the folders every test reads and writes, whatever the developer's environment holds.

- data: the vendored slice in ``toolkit/tasks/data`` (tests use only what is in the
  repository; a checkout next to ``../shared/data`` would otherwise read the full data);
- LLM response cache: a temporary folder for the session (no test reads or fills the user's);
- models: ``$TRACE2SKILL_MODELS_DIR`` if set, else the user cache dir, made explicit, so the
  one real-model test reuses the shared download while other tests cannot pick up a stray
  setting;
- the ``TRACE2SKILL_*`` settings that change answers (model, API base and key, calls log,
  no-cache, concurrency...) are removed.

Tests that need other folders set them with ``monkeypatch`` as before.

hypothesis is imported here, at startup: its pytest plugin otherwise imports (and so parses,
for assertion rewriting) its modules at the terminal summary of a run that did not use it,
and on CPython 3.11.7 that parse failed now and then with "SystemError: AST constructor
recursion depth mismatch" (CPython gh-106905, ASTs built while litellm's logging thread
runs), crashing a run whose tests had all passed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import hypothesis.internal.observability  # noqa: F401
import pytest

from toolkit.llm.model_store import MODELS_DIR_ENV, models_dir
from toolkit.tasks.datadir import DATA_DIR_ENV

VENDORED_DATA = Path(__file__).resolve().parents[1] / "toolkit" / "tasks" / "data"
_CLEARED = (
    "TRACE2SKILL_MODEL",
    "TRACE2SKILL_API_BASE",
    "TRACE2SKILL_API_KEY",
    "TRACE2SKILL_TEMPERATURE",
    "TRACE2SKILL_MAX_TOKENS",
    "TRACE2SKILL_TIMEOUT",
    "TRACE2SKILL_MAX_RETRIES",
    "TRACE2SKILL_CONCURRENCY",
    "TRACE2SKILL_CALLS_LOG",
    "TRACE2SKILL_NO_CACHE",
)


def pytest_configure(config: pytest.Config) -> None:
    # Test modules load tasks at import time (collection), before any fixture runs.
    os.environ[DATA_DIR_ENV] = str(VENDORED_DATA)


@pytest.fixture(autouse=True, scope="session")
def pinned_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Set the data, cache and models folders for the whole session (see the module doc)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(VENDORED_DATA))
        patch.setenv("TRACE2SKILL_CACHE_DIR", str(tmp_path_factory.mktemp("llm-cache")))
        patch.setenv(MODELS_DIR_ENV, str(models_dir()))
        for name in _CLEARED:
            if name in os.environ:
                patch.delenv(name)
        yield
