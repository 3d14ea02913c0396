"""The agent loop over the scripted fake model and the real sandbox."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from toolkit.agent import (
    MAX_CITED,
    MAX_GRAMMAR_STRING,
    Agent,
    AgentConfig,
    AgentResult,
    action_model,
    citable_ids,
    read_skill,
    system_prompt,
    task_message,
    truncate,
)
from toolkit.llm import FaultKind, Gateway, LLMConfig, fake_model
from toolkit.sandbox import SandboxConfig, SandboxDegradedWarning, SandboxLimits, SandboxPool
from toolkit.skill import load_skill

ROOT = Path(__file__).resolve().parents[1]
GSM8K_SKILL = load_skill(ROOT / "skills" / "gsm8k-math")
WORKFLOW = "gsm8k-math/workflow"
PATTERNS = "references/problem-patterns.md"


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def pool(loop: asyncio.AbstractEventLoop) -> Iterator[SandboxPool]:
    config = SandboxConfig(limits=SandboxLimits(cpu_s=5, wall_s=10), grace_s=1)
    pool = SandboxPool(size=1, config=config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxDegradedWarning)
        loop.run_until_complete(pool.start())
    yield pool
    loop.run_until_complete(pool.close())


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(
        LLMConfig(
            model="fake/echo",
            cache=False,
            cache_dir=tmp_path / "cache",
            calls_log=tmp_path / "llm_calls.jsonl",
            max_retries=0,
        )
    )
    yield gw
    gw.close()


def step_no(messages: list[dict[str, Any]]) -> int:
    """0-based step the agent is asking for (assistant replies so far)."""
    return sum(m["role"] == "assistant" for m in messages)


def act(tool: str, cited: list[str] | None = None, thought: str = "t", **args: str) -> dict:
    reply: dict[str, Any] = {"thought": thought, "tool": tool, "args": args}
    if cited is not None:
        reply["cited_sections"] = cited
    return reply


def solve(
    loop: asyncio.AbstractEventLoop,
    pool: SandboxPool,
    gateway: Gateway,
    script: Callable[[list[dict[str, Any]]], Any],
    *,
    skill: Any = GSM8K_SKILL,
    files: dict[str, str] | None = None,
    **config: Any,
) -> tuple[AgentResult, Any]:
    config.setdefault("protocol", "json")  # this module tests the json protocol

    async def go(model: str) -> AgentResult:
        agent = Agent(model, gateway, skill, AgentConfig(**config))
        async with pool.session(files) as session:
            return await agent.run("Problem: what is 6 * 7?", session, seed=11)

    with fake_model(script) as model:
        result = loop.run_until_complete(go(model))
    return result, model


# ---- pure parts ------------------------------------------------------------------------------


def test_action_model_enum_bounds_and_rejection() -> None:
    ids = citable_ids(GSM8K_SKILL)
    assert ids[0] == "gsm8k-math" and WORKFLOW in ids and PATTERNS in ids
    model = action_model(ids, ("python", "read_skill_file", "submit"))
    schema = json.dumps(model.model_json_schema())
    assert '"maxItems": 3' in schema and '"maxLength": 600' in schema
    cited_schema = model.model_json_schema()["properties"]["cited_sections"]
    assert cited_schema["items"]["enum"] == ids
    ok = model.model_validate(act("python", [WORKFLOW], code="print(1)"))
    assert ok.cited_sections == [WORKFLOW] and ok.args.code == "print(1)"
    with pytest.raises(ValidationError, match="cited_sections"):
        model.model_validate(act("python", ["made-up-section"], code="print(1)"))
    with pytest.raises(ValidationError, match="tool"):
        model.model_validate(act("shell", [], code="ls"))
    with pytest.raises(ValidationError):
        model.model_validate(act("python", [WORKFLOW] * 4, code="x"))
    with pytest.raises(ValidationError):
        model.model_validate(act("python", [], code="x" * 5000))


def test_every_string_and_list_is_bounded_for_the_grammar() -> None:
    schema = action_model(citable_ids(GSM8K_SKILL), ("python", "submit")).model_json_schema()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and "enum" not in node:
                assert 0 < node["maxLength"] <= MAX_GRAMMAR_STRING, node
            if node.get("type") == "array":
                assert node["maxItems"] <= MAX_CITED, node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)


def test_action_model_without_skill_has_no_citations() -> None:
    model = action_model([], ("python", "submit"))
    props = model.model_json_schema()["properties"]
    assert "cited_sections" not in props
    assert props["tool"]["enum"] == ["python", "submit"]


def test_prompts_per_delivery() -> None:
    full = system_prompt(GSM8K_SKILL, AgentConfig(protocol="json", delivery="system"))
    assert "## Workflow [gsm8k-math/workflow]" in full
    assert "Do the arithmetic in Python, never in your head" in full  # a section body
    assert "name: gsm8k-math" not in full  # frontmatter left out
    assert "read_skill_file" in full and PATTERNS in full
    progressive = system_prompt(GSM8K_SKILL, AgentConfig(protocol="json", delivery="progressive"))
    assert "- gsm8k-math/workflow: Workflow" in progressive
    assert "Do the arithmetic in Python, never in your head" not in progressive
    none = system_prompt(None, AgentConfig(protocol="json", delivery="none"))
    assert "read_skill_file" not in none and "cited_sections" not in none
    first = task_message("Problem: x", ["table.csv"], AgentConfig(protocol="json", max_turns=3))
    assert "table.csv" in first and "Step 1/3" in first


def test_read_skill_sections_files_and_errors() -> None:
    read = read_skill(GSM8K_SKILL, "", WORKFLOW)
    assert (read.file, read.section_id) == ("SKILL.md", WORKFLOW)
    assert read.text.startswith("## Workflow") and "## Answer format rules" not in read.text
    by_heading = read_skill(GSM8K_SKILL, "", "Pitfalls")
    assert by_heading.section_id == "gsm8k-math/pitfalls"
    whole = read_skill(GSM8K_SKILL, "problem-patterns.md", "")  # folder left out
    assert whole.file == PATTERNS and whole.section_id is None
    ref_section = read_skill(GSM8K_SKILL, "", "Ages")  # only in the reference
    assert ref_section.file == PATTERNS and ref_section.section_id.endswith("/ages")
    anchored = read_skill(GSM8K_SKILL, "", f"{PATTERNS}#averages")
    assert anchored.file == PATTERNS and anchored.section_id.endswith("/averages")
    missing = read_skill(GSM8K_SKILL, "", "no such thing")
    assert missing.error and WORKFLOW in missing.error
    assert "files:" in (read_skill(GSM8K_SKILL, "nope.md", "").error or "")
    assert read_skill(GSM8K_SKILL, "", "").error


def test_truncate_notes_what_was_cut() -> None:
    assert truncate("abc", 10, "hint") == ("abc", False)
    text, cut = truncate("x" * 150, 100, "print less")
    assert cut and text.startswith("x" * 100) and "50 more characters" in text


# ---- the loop --------------------------------------------------------------------------------


def test_python_then_submit(loop, pool, gateway) -> None:
    def script(messages):
        if step_no(messages) == 0:
            return act("python", [WORKFLOW], code="x = 6 * 7\nprint(x)")
        assert "Observation:\n42" in messages[-1]["content"]
        return act("submit", [], answer="42")

    result, model = solve(loop, pool, gateway, script)
    assert result.stop_reason == "submitted" and result.final_answer == "42"
    python, submit = result.steps
    assert python.action.tool == "python" and python.observation == "42"
    assert python.action.args == {"code": "x = 6 * 7\nprint(x)"}
    assert submit.action.args == {"answer": "42"}
    assert python.tokens_in > 0 and result.tokens_in == python.tokens_in + submit.tokens_in
    assert [(u.step, u.kind, u.ref) for u in result.section_uses] == [
        (0, "cited", f"SKILL.md#{WORKFLOW}")
    ]
    # Append-only chat: each prompt extends the previous one (KV-cache reuse).
    first, second = (r.messages for r in model.requests)
    assert second[: len(first)] == first and len(second) == len(first) + 2
    # Sampling is seeded per step and recorded.
    assert [r.params.get("seed") for r in model.requests] == [11, 12]
    assert all(r.params.get("temperature") == 0.7 for r in model.requests)


def test_progressive_reads_are_recorded(loop, pool, gateway) -> None:
    def script(messages):
        n = step_no(messages)
        if n == 0:
            return act("read_skill_file", [], section=WORKFLOW)
        if n == 1:
            assert "1. Read the last sentence first" in messages[-1]["content"]
            return act("read_skill_file", [WORKFLOW], path=PATTERNS)
        return act("submit", [PATTERNS, "gsm8k-math/pitfalls"], answer="42")

    result, model = solve(loop, pool, gateway, script, delivery="progressive")
    assert "1. Read the last sentence first" not in model.requests[0].messages[0]["content"]
    reads = [(u.step, u.ref) for u in result.section_uses if u.kind == "read"]
    cites = [(u.step, u.ref) for u in result.section_uses if u.kind == "cited"]
    assert reads == [(0, f"SKILL.md#{WORKFLOW}"), (1, PATTERNS)]
    assert cites == [
        (1, f"SKILL.md#{WORKFLOW}"),
        (2, PATTERNS),
        (2, "SKILL.md#gsm8k-math/pitfalls"),
    ]
    assert result.steps[0].read_sections == [f"SKILL.md#{WORKFLOW}"]
    assert result.steps[1].read_files == [PATTERNS]


def test_unknown_citation_fails_the_call(loop, pool, gateway) -> None:
    # The fake provider ignores the grammar, so the gateway's validation (plus one repair
    # round) is what rejects an id outside the enum.
    result, model = solve(loop, pool, gateway, lambda m: act("submit", ["bogus"], answer="1"))
    assert result.stop_reason == "error" and "cited_sections" in (result.error or "")
    assert result.steps == [] and model.calls == 2


def test_turn_budget_stops(loop, pool, gateway) -> None:
    counter = iter(range(100))
    result, model = solve(
        loop,
        pool,
        gateway,
        lambda m: act("python", [], code=f"print({next(counter)})"),
        max_turns=3,
        force_submit=False,
    )
    assert result.stop_reason == "max_turns" and len(result.steps) == 3
    assert result.final_answer is None and model.calls == 3
    assert "(last step)" in model.requests[-1].messages[-1]["content"]
    second = model.requests[1].messages[-1]["content"]
    assert "If the output above answers the question, call submit" in second


def tools_allowed(request: Any) -> list[str]:
    tool = request.params["response_format"]["schema"]["properties"]["tool"]
    return tool.get("enum") or [tool["const"]]


def test_last_turn_and_repeats_force_submit(loop, pool, gateway) -> None:
    def script(messages):
        if "call submit with your answer now" in messages[-1]["content"]:
            return act("submit", [], answer="7")
        return act("python", [], code="print(7)")

    result, model = solve(loop, pool, gateway, script, max_turns=5)
    # Step 1 repeats step 0, so step 2 may only submit.
    assert [s.action.tool for s in result.steps] == ["python", "python", "submit"]
    assert "You repeated your previous step" in model.requests[2].messages[-1]["content"]
    assert [tools_allowed(r) for r in model.requests] == [
        ["python", "read_skill_file", "submit"],
        ["python", "read_skill_file", "submit"],
        ["submit"],
    ]
    assert result.stop_reason == "submitted" and result.final_answer == "7"

    counter = iter(range(100))
    last, model = solve(
        loop,
        pool,
        gateway,
        lambda m: (
            script(m)
            if "(last step)" in m[-1]["content"]
            else act("python", [], code=f"print({next(counter)})")
        ),
        max_turns=3,
    )
    assert [tools_allowed(r) for r in model.requests][-1] == ["submit"]
    assert last.stop_reason == "submitted" and len(last.steps) == 3


def test_token_budget_stops(loop, pool, gateway) -> None:
    result, _ = solve(
        loop, pool, gateway, lambda m: act("python", [], code="print(1)"), token_budget=2500
    )
    assert result.stop_reason == "token_budget"
    assert 1 <= len(result.steps) < 6 and result.tokens_in + result.tokens_out >= 2500


def test_sandbox_errors_become_observations(loop, pool, gateway) -> None:
    def script(messages):
        n = step_no(messages)
        if n == 0:
            return act("python", [], code="while True:\n    pass")
        if n == 1:
            return act("python", [], code="1 / 0")
        if n == 2:
            return act("python", [])  # no code
        if n == 3:
            return act("submit", [])  # no answer
        return act("submit", [], answer="done")

    result, _ = solve(loop, pool, gateway, script, python_wall_s=1.0)
    loop_step, zero, no_code, no_answer, final = result.steps
    assert loop_step.error and ("TimeoutError" in loop_step.error or "CPU" in loop_step.error)
    assert "ZeroDivisionError" in zero.observation and zero.error.startswith("ZeroDivisionError")
    assert "needs args.code" in no_code.observation
    assert "needs args.answer" in no_answer.observation
    assert result.stop_reason == "submitted" and final.action.args == {"answer": "done"}


def test_long_output_is_truncated(loop, pool, gateway) -> None:
    def script(messages):
        if step_no(messages) == 0:
            return act("python", [], code="print('y' * 5000)")
        return act("submit", [], answer="1")

    result, _ = solve(loop, pool, gateway, script, observation_chars=300)
    step = result.steps[0]
    assert step.observation_truncated and len(step.observation) < 500
    assert "more characters not shown" in step.observation


def test_task_files_are_in_the_workspace(loop, pool, gateway) -> None:
    def script(messages):
        if step_no(messages) == 0:
            assert "Files in the current folder: table.csv" in messages[1]["content"]
            return act(
                "python", code="import pandas as pd\nprint(pd.read_csv('table.csv').a.sum())"
            )
        return act("submit", answer=messages[-1]["content"].split("\n")[1])

    result, _ = solve(
        loop,
        pool,
        gateway,
        script,
        skill=None,
        files={"table.csv": "a,b\n1,2\n3,4\n"},
        delivery="none",
    )
    assert result.final_answer == "4" and result.section_uses == []


def test_a_key_error_lists_the_session_tables_columns(loop, pool, gateway) -> None:
    def script(messages):
        if step_no(messages) == 0:
            return act("python", code="import pandas as pd\nt = pd.read_csv('table.csv')\nt['c']")
        return act("submit", answer="1")

    files = {"table.csv": "a,b\n1,2\n"}
    result, _ = solve(loop, pool, gateway, script, skill=None, files=files, delivery="none")
    assert "KeyError: 'c'" in result.steps[0].observation
    assert "t: ['a', 'b']" in result.steps[0].observation


def test_model_error_ends_with_error(loop, pool, gateway) -> None:
    def script(messages):
        if step_no(messages) == 0:
            return act("python", [], code="print(2)")
        return FaultKind.AUTH

    result, _ = solve(loop, pool, gateway, script)
    assert result.stop_reason == "error" and "AuthenticationError" in (result.error or "")
    assert len(result.steps) == 1 and result.steps[0].observation == "2"
