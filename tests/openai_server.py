"""A real OpenAI-compatible HTTP server on localhost (no network) that answers as scripted:
the gateway and litellm's own client talk to it as to a self-hosted model server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ServerState:
    """What the server answers and what it was asked."""

    def __init__(self) -> None:
        # (status, body) or (status, body, headers), consumed in order; then ``default``.
        # A body of bytes is sent as it is (a malformed reply).
        self.replies: list[tuple] = []
        # The reply once ``replies`` is used up: a fixed one, or one made from the request.
        self.default: Callable[[dict], tuple] = lambda request: (200, ok("fine"))
        self.delay = 0.0  # seconds each reply waits (a slow server)
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.lock = threading.Lock()


def ok(text: str, choices: bool = True, model: str = "mine") -> dict:
    """A chat completion holding ``text``, with usage (3 prompt and 1 completion tokens)."""
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [choice] if choices else [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def silent(text: str, model: str = "mine") -> dict:
    """A reply with no ``usage``, as some OpenAI-compatible servers send it."""
    reply = ok(text, model=model)
    del reply["usage"]
    return reply


@contextmanager
def serve() -> Iterator[tuple[ServerState, str]]:
    """Serve on a free local port; yields the state and the base URL (``.../v1``)."""
    state = ServerState()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                state.auth.append(self.headers.get("Authorization"))
                scripted = state.replies.pop(0) if state.replies else None
            status, reply, *extra = scripted or state.default(body)
            data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            time.sleep(state.delay)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
