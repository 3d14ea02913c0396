"""The app in a real browser: each page served by Streamlit and opened in headless Chromium.

Chromium is Debian's package (``scripts/install_system_deps.sh`` installs it); the test is
skipped where it is missing. It drives the browser over the DevTools protocol: open a page,
wait until its content is there, fail on any Streamlit exception box, save a screenshot under
the test's temp folder.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app_fixtures import make_runs
from toolkit.cli.app import streamlit_command

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")

#: url path -> a text the page shows once its data has rendered.
EXPECTED = {
    "runs": "Fixed (failed under A, passed under B)",
    "skill": "Written by merges",
    "tree": "Leaf patches",
    "attribution": "Edits measured",
    "usage": "Pruning candidates",
    "trajectories": "Matching trajectories",
    "cost": "Model calls",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


class DevTools:
    """A minimal Chrome DevTools protocol client over one page target."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params: object) -> dict:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    runs = make_runs(tmp_path_factory.mktemp("browser"))
    port = _free_port()
    env = {**os.environ, "TRACE2SKILL_RUNS_DIR": str(runs)}
    proc = subprocess.Popen(
        streamlit_command(port, "127.0.0.1", browser=False),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    port = _free_port()
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",  # root in CI containers
            "--disable-gpu",
            "--window-size=1400,1000",
            f"--remote-debugging-port={port}",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/json/version")
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list").read())
        page = next(t for t in targets if t["type"] == "page")
        from websockets.sync.client import connect

        with connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=30) as ws:
            tools = DevTools(ws)
            tools.call("Page.enable")
            yield tools
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("page", list(EXPECTED))
def test_page_in_chromium(served: str, browser: DevTools, page: str, tmp_path: Path) -> None:
    # The default page (runs) is served at the root.
    browser.call("Page.navigate", url=f"{served}/{'' if page == 'runs' else page}")
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = browser.evaluate("document.body ? document.body.innerText : ''") or ""
        if EXPECTED[page] in text:
            break
        time.sleep(0.5)
    time.sleep(1.5)  # let the charts and the rest of the script's output arrive
    shot = browser.call("Page.captureScreenshot", format="png")
    out = tmp_path / f"{page}.png"
    out.write_bytes(base64.b64decode(shot["data"]))
    errors = browser.evaluate(
        "[...document.querySelectorAll('[data-testid=\"stException\"]')]"
        ".map(e => e.innerText).join('\\n')"
    )
    assert not errors, f"{page}: Streamlit exception in the page:\n{errors}"
    assert "Page not found" not in text
    assert EXPECTED[page] in text, f"{page} never showed {EXPECTED[page]!r}; see {out}"
    assert out.stat().st_size > 10_000, sys.stderr.write(f"screenshot {out}\n")
