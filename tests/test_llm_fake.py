"""The scripted fake model as a litellm provider."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from pydantic import BaseModel

from toolkit.llm import FaultKind, Faults, fake_model, get_litellm


class Item(BaseModel):
    name: str


def ask(model: str, text: str = "hi") -> str:
    response = get_litellm().completion(model=model, messages=[{"role": "user", "content": text}])
    return response.choices[0].message.content


def test_script_replies_in_call_order() -> None:
    with fake_model(["one", {"k": 2}, Item(name="x")]) as model:
        assert [ask(model), ask(model), ask(model)] == ["one", '{"k": 2}', '{"name":"x"}']
        assert model.calls == 3


def test_exhausted_script_is_a_bad_request() -> None:
    litellm = get_litellm()
    with fake_model(["only"]) as model:
        ask(model)
        with pytest.raises(litellm.BadRequestError, match="exhausted"):
            ask(model)


def test_function_script_sees_messages() -> None:
    with fake_model(lambda messages: messages[-1]["content"].upper()) as model:
        assert ask(model, "shout") == "SHOUT"


def test_echo_model_always_registered() -> None:
    get_litellm()
    assert ask("fake/echo", "ping") == "ping"


def test_unknown_fake_model_is_a_bad_request() -> None:
    litellm = get_litellm()
    with pytest.raises(litellm.BadRequestError, match="no fake model named"):
        ask("fake/nope-never-registered")


def test_reports_usage() -> None:
    with fake_model(["a reply of some length"]) as model:
        response = get_litellm().completion(
            model=model, messages=[{"role": "user", "content": "x" * 40}]
        )
    assert response.usage.prompt_tokens >= 10
    assert response.usage.completion_tokens >= 5
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_faults_are_deterministic_for_a_seed() -> None:
    litellm = get_litellm()
    transient = (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.InternalServerError,
        litellm.APIConnectionError,
    )

    def run(seed: int) -> list[FaultKind | None]:
        with fake_model(lambda m: "ok", faults=Faults(rate=0.5, seed=seed)) as model:
            for i in range(60):
                with contextlib.suppress(*transient):
                    ask(model, f"q{i % 7}")
            return [r.fault for r in model.requests]

    first, again, other = run(1), run(1), run(2)
    assert first == again
    assert first != other
    assert 10 < sum(f is not None for f in first) < 50


def test_fault_kinds_raise_litellm_exceptions() -> None:
    litellm = get_litellm()
    expected = {
        FaultKind.TIMEOUT: litellm.Timeout,
        FaultKind.RATE_LIMIT: litellm.RateLimitError,
        FaultKind.SERVER_ERROR: litellm.InternalServerError,
        FaultKind.CONNECTION: litellm.APIConnectionError,
        FaultKind.AUTH: litellm.AuthenticationError,
    }
    for kind, exc_type in expected.items():
        with fake_model([kind]) as model, pytest.raises(exc_type):
            ask(model)


def test_content_faults_corrupt_the_json() -> None:
    import json

    for kind in (FaultKind.MALFORMED_JSON, FaultKind.TRUNCATED_JSON):
        with fake_model([Item(name="abc")], faults=Faults(rate=1.0, kinds=[kind])) as model:
            text = ask(model)
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)


def test_erroring_request_does_not_consume_script() -> None:
    litellm = get_litellm()
    with fake_model([FaultKind.RATE_LIMIT, "first", "second"]) as model:
        with pytest.raises(litellm.RateLimitError):
            ask(model)
        assert ask(model) == "first"
    with fake_model(["a", "b"], faults=Faults(rate=1.0, kinds=[FaultKind.TIMEOUT])) as model:
        for _ in range(3):
            with pytest.raises(litellm.Timeout):
                ask(model)
        assert model.calls == 3


def test_async_path_with_latency() -> None:
    litellm = get_litellm()

    async def go(model: str) -> list[str]:
        responses = await asyncio.gather(
            *(
                litellm.acompletion(model=model, messages=[{"role": "user", "content": str(i)}])
                for i in range(20)
            )
        )
        return [r.choices[0].message.content for r in responses]

    with fake_model(lambda m: m[-1]["content"], latency=0.05) as model:
        assert asyncio.run(go(model)) == [str(i) for i in range(20)]


def test_name_collision_and_unregister() -> None:
    with fake_model(name="fixed") as model:
        assert model == "fake/fixed"
        with pytest.raises(ValueError, match="already registered"), fake_model(name="fixed"):
            pass
    with fake_model(name="fixed") as again:  # freed on exit
        assert again == "fake/fixed"


def test_default_names_differ_between_processes() -> None:
    """Replies are cached under the model name: an unnamed fake called 'scenario-1' in every
    process replayed an earlier process's script (a new user's report)."""
    import re
    import subprocess
    import sys

    code = "from toolkit.llm import fake_model\nwith fake_model() as m: print(m)"
    names = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(names) == 2 and all(re.fullmatch(r"fake/scenario-[0-9a-f]{8}-1", n) for n in names)
    with fake_model() as mine:
        assert str(mine) not in names
