"""A loopback HTTP server that answers like the GitHub REST API and records every request.

Scripted answers are queued per ``(method, path)``; a request with no queued answer gets the
default behaviour of a small in-memory pull-request store (list, create, update, label).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGitHub:
    """State of the fake API: requests seen, scripted answers, open pull requests."""

    requests: list[Recorded] = field(default_factory=list)
    scripted: dict[tuple[str, str], deque] = field(default_factory=lambda: defaultdict(deque))
    pulls: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[int, list[str]] = field(default_factory=dict)

    def script(self, method: str, path: str, status: int, body: Any = None, headers=None):
        """Queue one answer for ``method path`` (used once, in order)."""
        self.scripted[(method, path)].append((status, body, headers or {}))

    def calls(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    def answer(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        queue = self.scripted.get((rec.method, rec.path))
        if queue:
            return queue.popleft()
        parts = rec.path.strip("/").split("/")
        if rec.method == "GET" and parts[-1] == "pulls":
            head = rec.query.get("head", [""])[0]
            base = rec.query.get("base", [""])[0]
            found = [
                p
                for p in self.pulls
                if p["state"] == "open"
                and f"o:{p['head']['ref']}" == head
                and p["base"]["ref"] == base
            ]
            return 200, found, {}
        if rec.method == "POST" and parts[-1] == "pulls":
            number = len(self.pulls) + 1
            pull = {
                "number": number,
                "html_url": f"https://github.com/o/r/pull/{number}",
                "state": "open",
                "title": rec.body["title"],
                "body": rec.body["body"],
                "draft": rec.body["draft"],
                "head": {"ref": rec.body["head"]},
                "base": {"ref": rec.body["base"]},
            }
            self.pulls.append(pull)
            return 201, pull, {}
        if rec.method == "PATCH" and parts[-2] == "pulls":
            pull = self.pulls[int(parts[-1]) - 1]
            pull.update(title=rec.body["title"], body=rec.body["body"])
            return 200, pull, {}
        if rec.method == "POST" and parts[-1] == "labels":
            number = int(parts[-2])
            self.labels.setdefault(number, []).extend(rec.body["labels"])
            return 200, [{"name": n} for n in self.labels[number]], {}
        return 404, {"message": "Not Found"}, {}


def serve(state: FakeGitHub) -> tuple[ThreadingHTTPServer, str]:
    """Start the fake API on 127.0.0.1 (a free port) in a daemon thread; return it and its URL."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            rec = Recorded(
                method=self.command,
                path=url.path,
                query=parse_qs(url.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=json.loads(raw) if raw else None,
            )
            state.requests.append(rec)
            status, body, headers = state.answer(rec)
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _handle  # noqa: N815

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
