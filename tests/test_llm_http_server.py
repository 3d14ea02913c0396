"""The gateway against a real OpenAI-compatible HTTP server on localhost (no network).

Found by a new-user trial with a self-hosted server: the provider's own client retried every
attempt of the gateway again (15 requests for "5 attempts"), a server that wanted no key made
the client refuse to start, and a reply with no choices raised IndexError.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.openai_server import ServerState, serve
from tests.openai_server import ok as _ok
from tests.openai_server import silent as _silent
from toolkit.errors import LLMError
from toolkit.llm import LLMConfig
from toolkit.llm.gateway import Gateway


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServerState, str]]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("TRACE2SKILL_API_KEY", raising=False)
    with serve() as served:
        yield served


def _gateway(url: str, tmp_path: Path, retries: int = 2) -> Gateway:
    return Gateway(
        LLMConfig(
            model="openai/mine",
            api_base=url,
            cache=False,
            cache_dir=tmp_path,
            max_retries=retries,
            retry_base_delay=0.0,
            retry_max_delay=0.0,
            timeout=20,
        )
    )


def test_each_gateway_attempt_is_one_request(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = server
    state.replies = [(500, {"error": {"message": "boom"}})] * 10
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-123456")
    with pytest.raises(LLMError, match="after 3 attempts"):
        _gateway(url, tmp_path).complete("hi")
    assert len(state.requests) == 3  # the client's own retries made it 9
    assert state.auth[0] == "Bearer sk-test-key-123456"


def test_a_server_that_wants_no_key_gets_a_placeholder(server, tmp_path: Path) -> None:
    # The client refused to start without a key ("Missing credentials", retried as a 5xx).
    state, url = server
    assert _gateway(url, tmp_path).complete("hi") == "fine"
    assert state.auth == ["Bearer no-key"]


def test_a_reply_with_no_choices_is_retried(server, tmp_path: Path) -> None:
    state, url = server
    state.replies = [(200, _ok("", choices=False))]
    assert _gateway(url, tmp_path).complete("hi") == "fine"
    assert len(state.requests) == 2


def test_a_structured_reply_cut_at_max_tokens_says_so(server, tmp_path: Path) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        value: int

    state, url = server
    cut = _ok('{"value": ')
    cut["choices"][0]["finish_reason"] = "length"
    state.replies = [(200, cut), (200, cut)]
    with pytest.raises(LLMError, match=r"repair round \(the reply stopped at max_tokens"):
        _gateway(url, tmp_path).complete("hi", response_model=Answer)


def _free_port() -> int:
    """A local port nothing listens on."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_server_that_is_not_there_is_named(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(LLMError) as failed:
        _gateway(url, tmp_path, retries=0).complete("hi")
    assert f"could not reach {url} (is the server up?)" in str(failed.value)
    assert "InternalServerError" not in str(failed.value)


def test_a_refusal_does_not_repeat_its_class_name(server, tmp_path: Path) -> None:
    state, url = server
    state.replies = [(401, {"error": {"message": "bad key"}})]
    with pytest.raises(LLMError) as failed:
        _gateway(url, tmp_path).complete("hi")
    assert str(failed.value).count("AuthenticationError") == 1, str(failed.value)


def test_credentials_in_the_url_reach_the_server_from_async_calls(server, tmp_path: Path) -> None:
    # litellm's async transport (aiohttp) refused a URL with user:password beside the
    # client's Authorization header: every eval/rollout call failed as "could not reach".
    import asyncio
    import base64

    state, url = server
    gateway = _gateway(url.replace("http://", "http://bob:hunter2pass@"), tmp_path, retries=0)
    assert asyncio.run(gateway.acomplete("hi")) == "fine"
    assert gateway.complete("hi") == "fine"
    basic = "Basic " + base64.b64encode(b"bob:hunter2pass").decode()
    assert state.auth == [basic, basic]


def test_a_password_in_the_url_is_not_in_the_error(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://bob:hunter2pass@127.0.0.1:{port}/v1"
    with pytest.raises(LLMError) as failed:
        _gateway(url, tmp_path, retries=0).complete("hi")
    assert "hunter2pass" not in str(failed.value)
    assert f"could not reach http://127.0.0.1:{port}/v1" in str(failed.value)


def test_a_model_the_server_does_not_serve_is_named_not_the_url(server, tmp_path: Path) -> None:
    # vLLM's reply to an unknown model name got the hint to fix a URL that was right.
    state, url = server
    state.replies = [(404, {"error": {"message": "The model `mine` does not exist."}})]
    with pytest.raises(LLMError) as failed:
        _gateway(url, tmp_path).complete("hi")
    assert f"does {url} serve 'mine'?" in str(failed.value)
    assert "ending in /v1" not in str(failed.value)
    state.replies = [(404, {"detail": "Not Found"})]  # a wrong path: the URL is the suspect
    with pytest.raises(LLMError, match="usually ending in /v1"):
        _gateway(url, tmp_path).complete("hi")


def test_a_rate_limited_server_s_retry_after_is_honoured(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # litellm keeps the server's headers in litellm_response_headers; exc.response is one it
    # builds without them, so Retry-After was never read and the retry came at the backoff.
    state, url = server
    state.replies = [(429, {"error": {"message": "slow down"}}, {"Retry-After": "2"})]
    delays: list[float] = []
    original = Gateway._retry_delay

    def spy(self: Gateway, call, exc, attempt):  # noqa: ANN001, ANN202
        delays.append(original(self, call, exc, attempt))
        return 0.0

    monkeypatch.setattr(Gateway, "_retry_delay", spy)
    gateway = _gateway(url, tmp_path)
    gateway.config.retry_max_delay = 30.0
    assert gateway.complete("hi") == "fine"
    assert delays == [2.0]


def test_an_unreadable_reply_is_one_readable_line(server, tmp_path: Path) -> None:
    # litellm's message repeated its class name three times and ended in the reprs of the
    # response object and its type: "...: error - Unterminated string ..., Received response
    # - <APIResponse [200 OK] type=<class '...'>>, Type of response - <class '...'>".
    state, url = server
    state.replies = [(200, b'{"id": "x", "choices": [{"message": {"content": "cut')] * 3
    with pytest.raises(LLMError) as failed:
        _gateway(url, tmp_path, retries=2).complete("hi")
    assert str(failed.value) == (
        "openai/mine: InternalServerError after 3 attempts (retries exhausted): "
        "could not read the server's reply: Unterminated string starting at: "
        "line 1 column 49 (char 48)"
    )


def test_a_timeout_is_one_readable_line(server, tmp_path: Path) -> None:
    # It read "Timeout after 1 attempts (retries exhausted): litellm.Timeout: APITimeoutError
    # - Request timed out. Error_str: Request timed out."
    state, url = server
    state.delay = 1.0
    gateway = _gateway(url, tmp_path, retries=0)
    gateway.config.timeout = 0.2
    with pytest.raises(LLMError) as failed:
        gateway.complete("hi")
    assert str(failed.value) == (
        "openai/mine: Timeout after 1 attempt (retries exhausted): Request timed out."
    )


def test_a_server_that_sends_no_usage_records_unknown_tokens_not_zero(
    server, tmp_path: Path
) -> None:
    """litellm fills a missing usage with zeros; the calls log recorded 0 tokens as if
    measured, and every token total and mean counted it."""
    from toolkit.llm import read_calls
    from toolkit.llm.calls import summarize_calls

    state, url = server
    state.replies = [(200, _silent("fine")), (200, {**_ok("fine"), "usage": None})]
    log = tmp_path / "llm_calls.jsonl"
    gateway = Gateway(_gateway(url, tmp_path).config, calls_log=log)
    silent = [gateway.complete_full("hi"), gateway.complete_full("hi again")]
    counted = gateway.complete_full("once more")  # the server's default reply has usage
    gateway.close()
    for c in silent:
        assert (c.tokens_in, c.tokens_out) == (None, None)
        assert c.tokens_estimate is not None and c.tokens_estimate > 0 and c.budget_tokens > 0
    assert (counted.tokens_in, counted.tokens_out, counted.tokens_estimate) == (3, 1, None)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["tokens_in"], x["tokens_out"]) for x in lines] == [(None, None)] * 2 + [(3, 1)]
    summary = summarize_calls(read_calls(log))
    assert (summary.tokens_in, summary.tokens_out, summary.tokens_unreported) == (3, 1, 2)


def test_a_repair_reply_without_usage_makes_the_call_s_tokens_unknown(
    server, tmp_path: Path
) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        value: int

    state, url = server
    state.replies = [(200, _ok("no json here")), (200, _silent('{"value": 4}'))]
    result = _gateway(url, tmp_path).complete_full("hi", response_model=Answer)
    assert result.value == Answer(value=4) and result.repair_rounds == 1
    # 3 + ? prompt tokens is not 3: the total of a call with an unreported part is unknown.
    assert (result.tokens_in, result.tokens_out) == (None, None)
    assert result.tokens_estimate is not None and result.tokens_estimate > 3 + 1
