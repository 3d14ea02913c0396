"""The gateway end to end over the fake litellm provider (no network anywhere)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from toolkit.errors import LLMError
from toolkit.llm import (
    FaultKind,
    Faults,
    Gateway,
    LLMConfig,
    fake_model,
    get_litellm,
    read_calls,
)


class Answer(BaseModel):
    value: int


def make_gateway(tmp_path: Path, **overrides: object) -> Gateway:
    settings: dict[str, object] = {
        "model": "fake/echo",
        "cache_dir": tmp_path / "cache",
        "calls_log": tmp_path / "llm_calls.jsonl",
        "retry_base_delay": 0.0005,
        "retry_max_delay": 0.002,
        "max_retries": 10,
        "concurrency": 32,
    }
    settings.update(overrides)
    return Gateway(LLMConfig(**settings))  # type: ignore[arg-type]


def doubled(messages: list[dict]) -> Answer:
    return Answer(value=2 * int(messages[-1]["content"]))


def test_text_call_returns_reply_and_usage(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    with fake_model(["hello there"]) as model:
        result = gw.complete_full("hi", model=model)
    assert result.text == "hello there"
    assert result.tokens_in > 0 and result.tokens_out > 0
    [record] = read_calls(tmp_path / "llm_calls.jsonl")
    assert record.call_id == result.call_id
    assert (record.tokens_in, record.tokens_out) == (result.tokens_in, result.tokens_out)
    assert record.model == str(model) and record.model_requests == 1 and not record.cache_hit


def test_500_async_calls_with_30pct_transient_faults(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    faults = Faults(rate=0.3, seed=7)

    async def run_all(model: str) -> list[Answer]:
        return await asyncio.gather(
            *(gw.acomplete(str(i), model=model, response_model=Answer) for i in range(500))
        )

    with fake_model(doubled, faults=faults) as model:
        results = asyncio.run(run_all(model))
        injected = sum(model.fault_counts.values())
        requests = model.calls
    assert [r.value for r in results] == [2 * i for i in range(500)]
    assert injected > 100  # the faults really happened (30% of ~700 requests)
    records = read_calls(tmp_path / "llm_calls.jsonl")
    assert len(records) == 500
    assert len({r.call_id for r in records}) == 500
    assert sum(r.retries for r in records) == injected
    assert sum(r.model_requests for r in records) == requests
    assert all(r.error is None for r in records)
    assert sum(1 for r in records if r.retries) > 50


def test_sync_threads_respect_concurrency_limit(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, concurrency=3, cache=False)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(messages: list[dict]) -> str:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        threading.Event().wait(0.02)
        with lock:
            state["now"] -= 1
        return messages[-1]["content"]

    with fake_model(slow) as model:
        out: list[str] = []
        threads = [
            threading.Thread(target=lambda i=i: out.append(gw.complete(f"q{i}", model=model)))
            for i in range(12)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(out) == sorted(f"q{i}" for i in range(12))
    assert state["peak"] == 3


def test_permanent_error_not_retried_one_clear_message(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    with fake_model(faults=Faults(rate=1.0, kinds=[FaultKind.AUTH])) as model:
        with pytest.raises(LLMError) as info:
            gw.complete("hi", model=model)
        assert model.calls == 1
    message = str(info.value)
    assert "AuthenticationError" in message and "\n" not in message
    assert message.count("AuthenticationError") == 1
    [record] = read_calls(tmp_path / "llm_calls.jsonl")
    assert record.error == "AuthenticationError" and record.retries == 0


def test_bad_request_not_retried(tmp_path: Path) -> None:
    litellm = get_litellm()
    gw = make_gateway(tmp_path)
    error = litellm.ContextWindowExceededError(
        message="prompt too long", model="x", llm_provider="fake"
    )
    with fake_model([error, "unused"]) as model:
        with pytest.raises(LLMError, match="ContextWindowExceeded"):
            gw.complete("hi", model=model)
        assert model.calls == 1


def test_retries_exhausted_is_clear_error(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, max_retries=2)
    with fake_model(faults=Faults(rate=1.0, kinds=[FaultKind.RATE_LIMIT])) as model:
        with pytest.raises(LLMError, match="RateLimitError after 3 attempts"):
            gw.complete("hi", model=model)
        assert model.calls == 3
    [record] = read_calls(tmp_path / "llm_calls.jsonl")
    assert record.retries == 2 and record.error == "RateLimitError"


@pytest.mark.parametrize("asynchronous", [False, True])
def test_retries_after_a_repair_round_count_that_request_s_attempts(
    tmp_path: Path, asynchronous: bool
) -> None:
    """The first reply came back (it only failed validation): it was no failed attempt. The
    error said "after 4 attempts" for a repair request tried 3 times."""
    gw = make_gateway(tmp_path, max_retries=2, cache=False)
    script = ["not json at all", *[FaultKind.SERVER_ERROR] * 3]
    with fake_model(script) as model:
        with pytest.raises(LLMError) as failed:
            if asynchronous:
                asyncio.run(gw.acomplete("hi", model=model, response_model=Answer))
            else:
                gw.complete("hi", model=model, response_model=Answer)
        assert model.calls == 4
    assert "InternalServerError after 3 attempts of the repair round's request" in str(failed.value)
    [record] = read_calls(tmp_path / "llm_calls.jsonl")
    assert (record.model_requests, record.retries, record.repair_rounds) == (4, 2, 1)


def test_retries_of_a_request_that_failed_and_then_came_back_are_not_counted_twice(
    tmp_path: Path,
) -> None:
    """A first request retried once, then a repair request that kept failing: the error
    counts the repair request's own tries (3), not all 5 requests."""
    gw = make_gateway(tmp_path, max_retries=2, cache=False)
    script = [FaultKind.RATE_LIMIT, "not json", *[FaultKind.RATE_LIMIT] * 3]
    with fake_model(script) as model, pytest.raises(LLMError, match="after 3 attempts of"):
        gw.complete("hi", model=model, response_model=Answer)


def test_each_transient_kind_is_retried(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, cache=False)
    for kind in (
        FaultKind.TIMEOUT,
        FaultKind.RATE_LIMIT,
        FaultKind.SERVER_ERROR,
        FaultKind.CONNECTION,
    ):
        with fake_model([kind, "ok"]) as model:
            assert gw.complete("hi", model=model) == "ok"
            assert model.calls == 2


def test_unexpected_provider_exception_is_not_retried(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)

    def broken(messages: list[dict]) -> str:
        raise ValueError("provider bug")

    with fake_model(broken) as model:
        with pytest.raises(LLMError, match="provider bug"):
            gw.complete("hi", model=model)
        assert model.calls == 1


def test_structured_output_valid_object_uses_schema(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    with fake_model([Answer(value=42)]) as model:
        assert gw.complete("q", model=model, response_model=Answer) == Answer(value=42)
        [request] = model.requests
    fmt = request.params["response_format"]
    assert fmt["type"] == "json_object"
    assert fmt["schema"] == Answer.model_json_schema()


def test_malformed_json_gets_one_repair_round(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    with fake_model([FaultKind.MALFORMED_JSON, Answer(value=5)]) as model:
        result = gw.complete_full("q", model=model, response_model=Answer)
        repair = model.requests[1].messages
    assert result.value == Answer(value=5)
    assert result.repair_rounds == 1
    assert repair[-2]["role"] == "assistant"
    assert "could not be used" in repair[-1]["content"]
    [record] = read_calls(tmp_path / "llm_calls.jsonl")
    assert record.repair_rounds == 1 and record.model_requests == 2


def test_always_malformed_fails_after_exactly_one_repair(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    faults = Faults(rate=1.0, kinds=[FaultKind.MALFORMED_JSON], seed=3)
    with fake_model([Answer(value=9)], faults=faults) as model:
        with pytest.raises(LLMError, match="no valid Answer after one repair round"):
            gw.complete("q", model=model, response_model=Answer)
        assert model.calls == 2


def test_truncated_twice_is_clear_error(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    with fake_model([FaultKind.TRUNCATED_JSON, FaultKind.TRUNCATED_JSON]) as model:
        with pytest.raises(LLMError) as info:
            gw.complete("q", model=model, response_model=Answer)
        assert model.calls == 2
    assert "no valid Answer after one repair round" in str(info.value)
    [record] = read_calls(tmp_path / "llm_calls.jsonl")
    assert record.error == "LLMError" and record.repair_rounds == 1
    assert not list((tmp_path / "cache").glob("*/*/*.json"))  # failures are not cached


def test_a_reply_cut_at_max_tokens_says_so(tmp_path: Path) -> None:
    """The agent must tell a reply that stopped at max_tokens from one that ended: the
    completion, the calls log and a cache replay all carry the finish reason."""
    gw = make_gateway(tmp_path)
    with fake_model([FaultKind.TRUNCATED_JSON, "whole"]) as model:
        cut = gw.complete_full("q", model=model)
        replayed = gw.complete_full("q", model=model)
        whole = gw.complete_full("other", model=model)
        assert model.calls == 2
    assert cut.finish_reason == "length" and cut.cut
    assert replayed.cache_hit and replayed.cut and replayed.text == cut.text
    assert whole.finish_reason == "stop" and not whole.cut
    records = read_calls(tmp_path / "llm_calls.jsonl")
    assert [r.finish_reason for r in records] == ["length", "length", "stop"]


def test_wrong_shape_json_is_repaired(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    with fake_model(['{"value": "many"}', 'Sure: ```json\n{"value": 3}\n```']) as model:
        assert gw.complete("q", model=model, response_model=Answer) == Answer(value=3)
        assert "value" in model.requests[1].messages[-1]["content"]


def test_cache_hit_costs_zero_model_calls(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    with fake_model(doubled) as model:
        first = gw.complete_full("21", model=model, response_model=Answer)
        second = gw.complete_full("21", model=model, response_model=Answer)
        assert model.calls == 1
    assert not first.cache_hit and second.cache_hit
    assert second.value == Answer(value=42)
    records = read_calls(tmp_path / "llm_calls.jsonl")
    assert [r.cache_hit for r in records] == [False, True]
    assert records[1].model_requests == 0 and records[1].tokens_in == 0


def test_cache_key_covers_params_model_and_schema(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    with fake_model(lambda m: '{"value": 1}') as model:
        gw.complete("q", model=model)
        gw.complete("q", model=model, temperature=0.5)
        gw.complete("q", model=model, response_model=Answer)
        gw.complete("q", model=model, temperature=0.5)
        assert model.calls == 3


def test_cache_false_bypasses(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    off = make_gateway(tmp_path, cache=False)
    with fake_model(lambda m: "x") as model:
        gw.complete("q", model=model)
        gw.complete("q", model=model, cache=False)
        off.complete("q", model=model)
        assert model.calls == 3
        gw.complete("q", model=model)
        assert model.calls == 3


def test_corrupt_cache_entry_is_a_miss(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    with fake_model(lambda m: "fresh") as model:
        gw.complete("q", model=model)
        [entry] = list((tmp_path / "cache").glob("*/*/*.json"))
        entry.write_text('{"schema_version": 1, "key": "trunc')
        assert gw.complete("q", model=model) == "fresh"
        assert model.calls == 2
    assert json.loads(entry.read_text())["text"] == "fresh"  # rewritten whole


def test_local_provider_missing_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import toolkit.llm._litellm as lit

    get_litellm()
    monkeypatch.setattr(lit, "_local_import_error", "ModuleNotFoundError: llama_cpp")
    gw = make_gateway(tmp_path)
    with pytest.raises(LLMError, match="make demo"):
        gw.complete("hi", model="local/qwen2.5-coder-1.5b")


def test_system_prompt_schema_for_providers_without_native_support(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    plan = gw._plan([{"role": "user", "content": "q"}], "someprovider/x", Answer, None, {})
    assert "response_format" not in plan.kwargs
    assert plan.messages[0]["role"] == "system"
    assert '"value"' in plan.messages[0]["content"]


def test_default_model_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACE2SKILL_MODEL", "fake/echo")
    assert LLMConfig.from_env().model == "fake/echo"
    monkeypatch.delenv("TRACE2SKILL_MODEL")
    assert LLMConfig.from_env().model.startswith("local/")
    assert LLMConfig.from_env(model="openai/gpt-4o-mini").model == "openai/gpt-4o-mini"


def test_config_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRACE2SKILL_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("TRACE2SKILL_CONCURRENCY", "5")
    monkeypatch.setenv("TRACE2SKILL_NO_CACHE", "1")
    monkeypatch.setenv("TRACE2SKILL_API_KEY", "sk-from-env-123456")
    cfg = LLMConfig.from_env()
    assert cfg.cache_dir == tmp_path / "c" and cfg.concurrency == 5 and cfg.cache is False
    assert "sk-from-env" not in repr(cfg) and "sk-from-env" not in cfg.model_dump_json()
    monkeypatch.setenv("TRACE2SKILL_CONCURRENCY", "zero")
    with pytest.raises(LLMError, match="concurrency"):
        LLMConfig.from_env()
    # One line naming the variable as the user set it (it was a pydantic dump with a URL).
    monkeypatch.delenv("TRACE2SKILL_CONCURRENCY")
    monkeypatch.setenv("TRACE2SKILL_TIMEOUT", "abc")
    with pytest.raises(LLMError) as bad:
        LLMConfig.from_env()
    assert str(bad.value).startswith("invalid LLM setting TRACE2SKILL_TIMEOUT: timeout: ")
    assert "\n" not in str(bad.value) and "errors.pydantic.dev" not in str(bad.value)
    monkeypatch.delenv("TRACE2SKILL_TIMEOUT")
    # One server, one spelling (the cache keys differed for `.../v1/` and `.../v1`).
    assert LLMConfig.from_env(api_base="http://h:8000/v1/").api_base == "http://h:8000/v1"


def test_a_run_records_its_server_without_a_password() -> None:
    from toolkit.llm.config import reusable_api_base, stored_api_base
    from toolkit.runs import Manifest, StageRecord, recorded_api_base, with_recorded_server

    assert stored_api_base("http://u:secret@h:8000/v1/") == "http://u:***@h:8000/v1"
    assert stored_api_base("http://h:8000/v1") == "http://h:8000/v1"
    with pytest.raises(LLMError, match="password was not stored"):
        reusable_api_base("http://u:***@h:8000/v1")
    manifest = Manifest(
        run_id="r",
        created_at="2026-01-01T00:00:00+00:00",
        toolkit_version="0",
        stages={
            "rollout": StageRecord(
                status="done",
                started_at="2026-01-01T00:00:00+00:00",
                config={"model": "openai/mine", "api_base": "http://h/v1"},
            )  # fmt: skip
        },
    )
    assert recorded_api_base(manifest, "openai/mine") == "http://h/v1"
    assert recorded_api_base(manifest, "openai/gpt-4o") is None  # another model: not its
    cfg = LLMConfig(model="openai/mine", cache=False)
    assert with_recorded_server(cfg, manifest, "openai/mine").api_base == "http://h/v1"
    given = cfg.model_copy(update={"api_base": "http://elsewhere/v1"})
    assert with_recorded_server(given, manifest, "openai/mine").api_base == "http://elsewhere/v1"


def test_one_model_as_agent_and_as_author_on_two_servers_keeps_them_apart() -> None:
    """`evolve --author-api-base URL` without --author-model: the agent's model on the
    provider's endpoint is also the author on URL. The evaluations went to the author's
    server (recorded by analyse for the same model name); a password there made them fail."""
    from toolkit.runs import Manifest, StageRecord, recorded_api_base

    def stage(**config: object) -> StageRecord:
        return StageRecord(status="done", started_at="2026-01-01T00:00:00+00:00", config=config)

    manifest = Manifest(
        run_id="r",
        created_at="2026-01-01T00:00:00+00:00",
        toolkit_version="0",
        stages={
            "evolve": stage(model="openai/m", author_model=None, author_api_base="http://a/v1"),
            "rollout": stage(model="openai/m", api_base=None),
            "analyse": stage(model="openai/m", api_base="http://a/v1"),
            "consolidate": stage(author_model="openai/m", api_base="http://a/v1"),
        },
    )
    assert recorded_api_base(manifest, "openai/m") is None  # the agent: provider endpoint
    assert recorded_api_base(manifest, "openai/m", "author") == "http://a/v1"
    # A run with no agent stage yet (consolidate of analyses made elsewhere) still finds it.
    del manifest.stages["rollout"]
    del manifest.stages["evolve"]
    assert recorded_api_base(manifest, "openai/m", "author") == "http://a/v1"
