"""Secrets never reach the calls log, log records or raised messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from toolkit.errors import LLMError
from toolkit.llm import Gateway, LLMConfig, fake_model, get_litellm, redact

ENV_KEY = "sk-test-PLANTEDenv0123456789"
PARAM_KEY = "plain-PLANTEDparam-9876543210"
TOKEN = "ghp_PLANTEDtoken_abcdefghij"


def test_redact_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", TOKEN)
    text = (
        f"key sk-abcdefghijklmnop, header Authorization: Bearer abc.def-123456, "
        f"url ?api_key=s3cr3tvalue&x=1, cfg {{'api_key': 'anothersecret'}} tok {TOKEN}"
    )
    out = redact(text)
    for secret in ("sk-abcdefghijklmnop", "abc.def-123456", "s3cr3tvalue", "anothersecret", TOKEN):
        assert secret not in out
    assert "[REDACTED]" in out and "Authorization: Bearer" in out and "&x=1" in out


def test_redact_leaves_ordinary_text() -> None:
    assert redact("skill sections and keys of a dict") == "skill sections and keys of a dict"


def test_planted_keys_never_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    litellm = get_litellm()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="LiteLLM")
    caplog.set_level(logging.DEBUG, logger="toolkit.llm")
    leak = f"upstream said: key={ENV_KEY} param={PARAM_KEY} Bearer {PARAM_KEY}"
    script = [
        litellm.RateLimitError(message=leak, model="x", llm_provider="fake"),
        "fine",
        litellm.AuthenticationError(message=leak, model="x", llm_provider="fake"),
    ]
    gw = Gateway(
        LLMConfig(
            cache_dir=tmp_path / "cache",
            calls_log=tmp_path / "llm_calls.jsonl",
            retry_base_delay=0.0001,
            model="fake/echo",
        )
    )
    with fake_model(script) as model:
        assert gw.complete("hi", model=model, api_key=PARAM_KEY) == "fine"
        with pytest.raises(LLMError) as info:
            gw.complete("again", model=model, api_key=PARAM_KEY)
        assert all("api_key" not in r.params for r in model.requests)
    log_text = (tmp_path / "llm_calls.jsonl").read_text()
    cache_text = "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "upstream said" in logged  # the retry was logged, redacted
    for secret in (ENV_KEY, PARAM_KEY):
        assert secret not in str(info.value)
        assert secret not in log_text
        assert secret not in logged
        assert secret not in cache_text
    assert "AuthenticationError" in str(info.value) and "[REDACTED]" in str(info.value)


def test_no_loop_change_warning_between_blocking_calls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each blocking call runs its own event loop (each evolve stage does); litellm's warning
    that its logging worker moved to the new loop reached users' terminals."""
    from toolkit.sync import run_sync

    caplog.set_level(logging.DEBUG, logger="LiteLLM")
    gw = Gateway(
        LLMConfig(cache_dir=tmp_path / "cache", calls_log=tmp_path / "c.jsonl", model="fake/x")
    )
    with fake_model(["a", "b", "c"]) as model:
        assert [run_sync(gw.acomplete(f"q{i}", model=model)) for i in range(3)] == ["a", "b", "c"]
    assert not [r for r in caplog.records if "event loop changed" in r.getMessage()]
    logging.getLogger("LiteLLM").warning("another warning")  # the filter drops only that one
    assert "another warning" in caplog.text
