"""The served app and a headless Chromium driven over the DevTools protocol.

Shared by ``tests/test_app_browser.py`` (each page renders without an exception) and
``scripts/screenshots.py`` (the README's screenshots of the example run). Chromium is
Debian's package (``scripts/install_system_deps.sh`` installs it).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from toolkit.cli.app import streamlit_command

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    """Wait until ``url`` answers (raises the last error after ``timeout`` seconds)."""
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

    def text(self) -> str:
        """The page's visible text."""
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def exceptions(self) -> str:
        """The text of every Streamlit exception box on the page."""
        return str(
            self.evaluate(
                "[...document.querySelectorAll('[data-testid=\"stException\"]')]"
                ".map(e => e.innerText).join('\\n')"
            )
            or ""
        )


@contextlib.contextmanager
def serve_app(runs_dir: Path) -> Iterator[str]:
    """``trace2skill app`` over ``runs_dir`` on a free port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "TRACE2SKILL_RUNS_DIR": str(runs_dir)}
    proc = subprocess.Popen(
        streamlit_command(port, "127.0.0.1", browser=False),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def chromium(profile: Path, size: str = "1400,1000") -> Iterator[DevTools]:
    """A headless Chromium with one page, driven over DevTools."""
    if CHROMIUM is None:
        raise RuntimeError("Chromium is not installed (scripts/install_system_deps.sh)")
    port = free_port()
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # root in CI containers
            "--disable-gpu",
            f"--window-size={size}",
            f"--remote-debugging-port={port}",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/json/version")
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
