"""The tools protocol: native tool calls through the gateway, run in the real sandbox."""

from __future__ import annotations

import json

import pytest

from tests.test_agent import GSM8K_SKILL, act, gateway, loop, pool, solve, step_no  # noqa: F401
from toolkit.agent import Agent, AgentConfig, agent_fingerprint, system_prompt
from toolkit.errors import ToolkitError
from toolkit.llm import FaultKind
from toolkit.tools_protocol import (
    check_support,
    copies_harness,
    no_call_text,
    tool_specs,
    written_call,
)


def call(name: str, **arguments: object) -> dict:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def test_specs_prompt_and_fingerprint() -> None:
    names = [s["function"]["name"] for s in tool_specs(True, ["a/b"])]
    assert names == ["python", "read_skill_file", "submit"]
    assert [s["function"]["name"] for s in tool_specs(False)] == ["python", "submit"]
    section = tool_specs(True, ["a/b"])[1]["function"]["parameters"]["properties"]["section"]
    assert section["enum"] == ["a/b"]
    cfg = AgentConfig(protocol="tools")
    assert agent_fingerprint(cfg) != agent_fingerprint(AgentConfig())
    assert agent_fingerprint(cfg) != agent_fingerprint(AgentConfig(protocol="code"))
    text = system_prompt(GSM8K_SKILL, cfg.model_copy(update={"delivery": "progressive"}))
    assert "JSON" not in text and "args.section" not in text and "section = its id" in text


def test_python_then_submit_with_history_in_openai_form(loop, pool, gateway) -> None:  # noqa: F811
    def script(messages):
        if step_no(messages) == 0:
            return call("python", code="x = 6 * 7\nprint(x)")
        assistant, tool = messages[-2], messages[-1]
        assert assistant["tool_calls"][0]["function"]["name"] == "python"
        assert tool["role"] == "tool" and tool["tool_call_id"] == assistant["tool_calls"][0]["id"]
        assert tool["content"].startswith("42")
        return call("submit", answer="42")

    result, model = solve(loop, pool, gateway, script, protocol="tools")
    assert result.stop_reason == "submitted" and result.final_answer == "42"
    assert [s.action.tool for s in result.steps] == ["python", "submit"]
    assert result.steps[0].action.args == {"code": "x = 6 * 7\nprint(x)"}
    # Every call carries the tool definitions and no response schema.
    assert all(r.params.get("tools") for r in model.requests)
    assert all("response_format" not in r.params for r in model.requests)


def test_final_answer_line_without_a_call_ends_the_task(loop, pool, gateway) -> None:  # noqa: F811
    result, _ = solve(
        loop, pool, gateway, lambda m: "It is 42.\nFINAL ANSWER: 42", protocol="tools",
        code_check=False,
    )  # fmt: skip
    assert result.final_answer == "42" and result.steps[0].action.tool == "submit"


def test_an_answer_before_any_python_is_sent_back_once(loop, pool, gateway) -> None:  # noqa: F811
    """Seen with the embedded 1.5B: 4 of its first 5 GSM8K answers were prose, no python."""
    result, model = solve(
        loop, pool, gateway, lambda m: "It is 42.\nFINAL ANSWER: 42", protocol="tools"
    )
    assert result.final_answer == "42" and [s.action.tool for s in result.steps] == [
        "respond", "submit",
    ]  # fmt: skip
    assert result.steps[0].observation.startswith("Your answer (42) came before any python ran")
    # A submit call is checked the same way; after python ran, it is taken at once.
    replies = [call("submit", answer="41"), call("python", code="print(6 * 7)"),
               call("submit", answer="42")]  # fmt: skip
    result, model = solve(loop, pool, gateway, lambda m: replies[step_no(m)], protocol="tools")
    assert result.final_answer == "42" and len(result.steps) == 3
    assert "Your answer (41) came before" in model.requests[1].messages[-1]["content"]


def test_bad_replies_become_observations(loop, pool, gateway) -> None:  # noqa: F811
    replies = [
        "Let me think.",  # neither a call nor an answer
        {"tool_calls": [{"name": "python", "arguments": "{not json"}]},
        call("read_skill_file", section="no-such-section"),
        {
            "tool_calls": [
                {"name": "python", "arguments": {"code": "a = 6"}},
                {"name": "python", "arguments": {"code": "print(a)"}},
            ]
        },  # fmt: skip
        call("submit", answer=""),
        call("read_skill_file", section="gsm8k-math/workflow"),
        call("submit", answer="42"),
    ]

    def script(messages):
        return replies[step_no(messages)]

    result, _ = solve(loop, pool, gateway, script, protocol="tools", max_turns=8)
    assert result.final_answer == "42"
    observations = [s.observation for s in result.steps]
    assert observations[0].startswith("Error: no tool call. Call the python function")
    assert "not JSON" in observations[1]
    assert observations[2].startswith("Error:")
    assert observations[4].startswith("Error: submit needs")
    assert [s.error is not None for s in result.steps] == [
        True, True, True, False, True, False, False,
    ]  # fmt: skip
    assert [(u.kind, u.ref) for u in result.section_uses] == [
        ("read", "SKILL.md#gsm8k-math/workflow")
    ]


def test_a_fenced_block_without_a_call_runs_as_python(loop, pool, gateway) -> None:  # noqa: F811
    def script(messages):
        if step_no(messages) == 0:
            return "I will compute it.\n```python\nprint(6 * 7)\n```"
        assert messages[-1]["role"] == "user" and messages[-1]["content"].startswith("42")
        return call("submit", answer="42")

    result, _ = solve(loop, pool, gateway, script, protocol="tools")
    assert result.final_answer == "42"
    assert [s.action.tool for s in result.steps] == ["python", "submit"]
    assert result.steps[0].action.args == {"code": "print(6 * 7)\n"}
    assert "call the python tool next" in result.steps[0].observation


def test_prose_twice_in_a_row_ends_with_the_models_own_answer(loop, pool, gateway) -> None:  # noqa: F811
    """Seen with the embedded 1.5B: a prose solution, then the harness's error copied back
    each turn until the steps ran out (3 of 10 GSM8K tasks)."""
    replies = [
        "Mark earns $12 an hour for 40 hours.\nMark makes $480/week.",
        "Error: call a tool (python, or submit with your answer).",
    ]
    result, model = solve(
        loop, pool, gateway, lambda m: replies[step_no(m)], protocol="tools", max_turns=6
    )
    assert result.stop_reason == "submitted" and result.final_answer == "Mark makes $480/week"
    assert [s.action.tool for s in result.steps] == ["respond", "submit"]
    assert result.steps[0].error == "no tool call"
    assert result.steps[1].observation.startswith("No tool call twice in a row")
    # Turn notes only open the task and close it: the model copied every other one.
    first = model.requests[0].messages[-1]["content"]
    assert first.endswith("Call one tool now: python to compute, submit to answer.")
    assert "Step" not in model.requests[1].messages[-1]["content"]
    # Without force_submit the loop runs to its end as before, and says nothing was given.
    result, _ = solve(
        loop, pool, gateway, lambda m: "Let me think.", protocol="tools", max_turns=3,
        force_submit=False,
    )  # fmt: skip
    assert result.stop_reason == "max_turns" and result.final_answer is None


def test_the_embedded_model_is_shown_its_own_call_form() -> None:
    text = no_call_text("local/qwen2.5-coder-1.5b")
    assert "<tool_call>" in text and '"name": "python"' in text
    assert "<tool_call>" not in no_call_text("openai/gpt-4o-mini")
    assert copies_harness("Error: call a tool.\n\nStep 2/6.") and copies_harness("Step 3/6. Hi")
    assert not copies_harness("The answer is 5.") and not copies_harness("")


def test_code_beside_an_answer_runs_before_the_answer_counts(loop, pool, gateway) -> None:  # noqa: F811
    replies = ["```python\nprint(6 * 7)\n```\nFINAL ANSWER: 41", "FINAL ANSWER: 42"]
    result, model = solve(loop, pool, gateway, lambda m: replies[step_no(m)], protocol="tools")
    assert result.final_answer == "42" and [s.action.tool for s in result.steps] == [
        "python", "submit",
    ]  # fmt: skip
    assert model.requests[1].messages[-1]["content"].startswith("42")


def test_a_call_written_as_text_is_taken_as_made(loop, pool, gateway) -> None:  # noqa: F811
    """Seen with the embedded 1.5B: its submit call inside a fenced python block."""
    replies = [
        'Compute.\n```json\n{"name": "python", "arguments": {"code": "print(6 * 7)"}}\n```',
        'Done.\n```python\n{"name": "submit", "arguments": {"answer": "42"}}\n```',
    ]
    result, model = solve(loop, pool, gateway, lambda m: replies[step_no(m)], protocol="tools")
    assert result.final_answer == "42" and [s.action.tool for s in result.steps] == [
        "python", "submit",
    ]  # fmt: skip
    assert model.requests[1].messages[-1]["role"] == "tool"
    assert model.requests[1].messages[-1]["content"].startswith("42")
    # Only known tools count, and a JSON line of its own is a call too.
    assert written_call('{"name": "search", "arguments": {}}') is None
    assert written_call('x\n{"name": "submit", "arguments": {"answer": "3"}}').name == "submit"
    assert written_call("```python\nprint({'name': 1})\n```") is None
    two = '```python\n{"name": "python", "arguments": {"code": "print(5)"}}\n' \
        '{"name": "submit", "arguments": {"answer": "5"}}\n```'  # fmt: skip
    assert written_call(two).arguments == {"code": "print(5)"}  # the first of two lines


def test_extra_calls_are_reported_to_the_model(loop, pool, gateway) -> None:  # noqa: F811
    def script(messages):
        if step_no(messages) == 0:
            return {"tool_calls": [{"name": "python", "arguments": {"code": "print(1)"}},
                                   {"name": "submit", "arguments": {"answer": "1"}}]}  # fmt: skip
        assert "Only your first tool call was run" in messages[-1]["content"]
        return call("submit", answer="42")

    result, _ = solve(loop, pool, gateway, script, protocol="tools")
    assert result.final_answer == "42" and len(result.steps) == 2
    # The trajectory shows the note the model was given.
    assert "Only your first tool call was run" in result.steps[0].observation


def test_an_unknown_tool_keeps_its_arguments_and_names_the_tools(loop, pool, gateway) -> None:  # noqa: F811
    replies = [call("calculator", expression="6*7"), call("submit", answer="42")]
    result, model = solve(
        loop, pool, gateway, lambda m: replies[step_no(m)], protocol="tools", code_check=False
    )
    assert result.final_answer == "42"
    step = result.steps[0]
    assert step.action.tool == "calculator" and step.action.args == {"expression": "6*7"}
    assert step.observation == (
        "Error: unknown tool 'calculator': the tools are python, read_skill_file, submit."
    )
    assert step.error == "unknown tool 'calculator'"
    assert model.requests[1].messages[-1]["content"].startswith(step.observation)
    bare, _ = solve(
        loop, pool, gateway, lambda m: replies[step_no(m)], protocol="tools", skill=None,
        code_check=False,
    )  # fmt: skip
    assert bare.steps[0].observation.endswith("the tools are python, submit.")


def test_a_reply_cut_at_max_tokens_is_no_answer(loop, pool, gateway) -> None:  # noqa: F811
    """A trial: a reply stopped at max_tokens, twice, became the submitted answer (its last
    line, through the latest-own-value fallback)."""
    result, model = solve(
        loop, pool, gateway, lambda m: FaultKind.TRUNCATED_JSON, protocol="tools", max_turns=3
    )
    assert result.final_answer is None and result.stop_reason == "max_turns"
    assert [s.error for s in result.steps] == ["reply cut at max_tokens (1024 tokens)"] * 3
    told = model.requests[1].messages[-1]
    assert told["role"] == "user" and "max_tokens limit (1024 tokens)" in told["content"]
    assert "one tool call" in told["content"]
    # A value the model printed before still ends the task; the cut text never does.
    replies = [call("python", code="print(6 * 7)"), FaultKind.TRUNCATED_JSON]
    later, _ = solve(
        loop, pool, gateway, lambda m: replies[min(step_no(m), 1)], protocol="tools",
        max_turns=3,
    )  # fmt: skip
    assert later.final_answer == "42" and "latest value (42)" in later.steps[-1].observation


def test_last_turn_says_so_and_stops(loop, pool, gateway) -> None:  # noqa: F811
    result, model = solve(
        loop, pool, gateway, lambda m: call("python", code="print(1)"), protocol="tools",
        max_turns=3,
    )  # fmt: skip
    assert "(last)" in model.requests[-1].messages[-1]["content"]
    # Out of steps, the value its code printed stands (program-aided, as in the code protocol).
    assert result.stop_reason == "submitted" and result.final_answer == "1"
    assert "your latest value (1) is submitted" in result.steps[-1].observation
    result, _ = solve(
        loop, pool, gateway, lambda m: call("python", code="x = 1"), protocol="tools",
        max_turns=2,
    )  # fmt: skip
    assert result.stop_reason == "max_turns" and result.final_answer is None  # nothing printed
    warned = "import sys; print('7', file=sys.stderr)"
    result, _ = solve(
        loop, pool, gateway, lambda m: call("python", code=warned), protocol="tools", max_turns=2
    )
    assert result.final_answer is None  # stderr is no answer


def test_a_full_context_ends_with_the_latest_value(loop, pool, gateway) -> None:  # noqa: F811
    from tests.test_agent_code_protocol import context_full

    replies = [call("python", code="print(1)"), context_full()]
    result, _ = solve(loop, pool, gateway, lambda m: replies[step_no(m)], protocol="tools")
    assert result.stop_reason == "submitted" and result.final_answer == "1"
    assert "context window: your latest value (1) is submitted" in result.steps[-1].observation
    # The json protocol has no fallback: the task ends with the stop reason, not as an error.
    json_replies = [act("python", [], code="x = 1"), context_full()]
    ended, _ = solve(loop, pool, gateway, lambda m: json_replies[step_no(m)])
    assert ended.stop_reason == "context_window" and len(ended.steps) == 1


def test_a_printed_value_beats_a_tool_name_written_as_prose(loop, pool, gateway) -> None:  # noqa: F811
    """Seen with the embedded 1.5B: its code printed 600, then it replied "python", then
    "submit" (and "submit" was submitted)."""
    replies = ["```python\nprint(24 * 25)\n```", "python", "submit"]
    result, _ = solve(loop, pool, gateway, lambda m: replies[step_no(m)], protocol="tools")
    assert result.final_answer == "600" and len(result.steps) == 3
    assert result.steps[-1].observation.startswith("No tool call twice in a row: your latest ")


def test_models_known_without_function_calling_are_refused(gateway) -> None:  # noqa: F811
    check_support("local/qwen2.5-coder-1.5b")
    check_support("fake/echo")
    check_support("openai/gpt-4o-mini")
    check_support("some-server/unknown-model-xyz")  # unknown: the provider decides
    with pytest.raises(ToolkitError, match="does not support native tool calls"):
        check_support("deepseek/deepseek-reasoner")
    with pytest.raises(ToolkitError, match="--protocol code"):
        Agent("deepseek/deepseek-reasoner", gateway, None, AgentConfig(protocol="tools"))


def test_tool_definitions_are_json_serialisable() -> None:
    json.dumps(tool_specs(True, ["x"]))


def test_a_refused_tools_request_leaves_no_run_folder(tmp_path) -> None:
    """It left splits.json behind, so the corrected retry with another --limit was refused
    ("records split 'test' with limit 1, not 3")."""
    from toolkit.rollout import run_rollouts

    with pytest.raises(ToolkitError, match="does not support native tool calls"):
        run_rollouts(
            "gsm8k",
            "test",
            None,
            "deepseek/deepseek-reasoner",
            run_dir=tmp_path / "run",
            limit=1,
            agent_config=AgentConfig(protocol="tools"),
            progress=False,
        )
    assert not (tmp_path / "run").exists()
