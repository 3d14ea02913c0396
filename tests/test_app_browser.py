"""The app in a real browser: each page served by Streamlit and opened in headless Chromium.

Chromium is Debian's package (``scripts/install_system_deps.sh`` installs it); the test is
skipped where it is missing. It drives the browser over the DevTools protocol: open a page,
wait until its content is there, fail on any Streamlit exception box, save a screenshot under
the test's temp folder.
"""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app_fixtures import make_runs
from tests.browser import CHROMIUM, DevTools, chromium, serve_app

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")

#: url path -> a text the page shows once its data has rendered.
EXPECTED = {
    "runs": "Fixed (failed under A, passed under B)",
    "conditions": "Shared tasks",
    "skill": "Written by merges",
    "tree": "Leaf patches",
    "attribution": "Edits measured",
    "usage": "Pruning candidates",
    "trajectories": "Matching trajectories",
    "cost": "Model calls",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_app(make_runs(tmp_path_factory.mktemp("browser"))) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as tools:
        yield tools


@pytest.mark.parametrize("page", list(EXPECTED))
def test_page_in_chromium(served: str, browser: DevTools, page: str, tmp_path: Path) -> None:
    # The default page (runs) is served at the root.
    browser.call("Page.navigate", url=f"{served}/{'' if page == 'runs' else page}")
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = browser.text()
        if EXPECTED[page] in text:
            break
        time.sleep(0.5)
    time.sleep(1.5)  # let the charts and the rest of the script's output arrive
    shot = browser.call("Page.captureScreenshot", format="png")
    out = tmp_path / f"{page}.png"
    out.write_bytes(base64.b64decode(shot["data"]))
    errors = browser.exceptions()
    assert not errors, f"{page}: Streamlit exception in the page:\n{errors}"
    assert "Page not found" not in text
    assert EXPECTED[page] in text, f"{page} never showed {EXPECTED[page]!r}; see {out}"
    assert out.stat().st_size > 10_000, sys.stderr.write(f"screenshot {out}\n")
