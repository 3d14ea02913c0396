"""Native tool calls: parsing, the Hermes text form, and the gateway round trip (fake model)."""

from __future__ import annotations

from pathlib import Path

from toolkit.llm import Gateway, LLMConfig, fake_model, read_calls
from toolkit.llm.tool_calls import make_call, parse_reply_text, reply_text, split_hermes

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "python",
            "description": "Run python code.",
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string"}},
                "required": ["code"],
            },
        },
    }
]


def test_make_call_accepts_dict_or_json_and_reports_bad_arguments() -> None:
    assert make_call("python", '{"code": "1"}').arguments == {"code": "1"}
    assert make_call("python", {"code": "1"}).arguments == {"code": "1"}
    bad = make_call("python", "{code: 1")
    assert bad.arguments == {} and bad.error and "not JSON" in bad.error
    assert make_call("python", "[1]").error == "arguments are not a JSON object"
    # The same call gets the same id (cache replays stay stable); another index does not.
    assert make_call("python", {"code": "1"}).id == make_call("python", {"code": "1"}).id
    assert make_call("python", {"code": "1"}, 1).id != make_call("python", {"code": "1"}).id


def test_reply_text_round_trips_and_plain_text_stays_plain() -> None:
    calls = [make_call("python", {"code": "print(2)"})]
    content, back = parse_reply_text(reply_text("thinking", calls))
    assert content == "thinking" and back == calls
    assert parse_reply_text('{"answer": 3}') == ('{"answer": 3}', [])
    assert parse_reply_text("FINAL ANSWER: 3") == ("FINAL ANSWER: 3", [])


def test_split_hermes_takes_blocks_out_even_when_cut_off() -> None:
    text = (
        "Let me compute.\n<tool_call>\n"
        '{"name": "python", "arguments": {"code": "print(6*7)"}}\n</tool_call>\n'
        '<tool_call>{"name": "read_skill", "arguments": {"section'
    )
    rest, calls = split_hermes(text)
    assert rest == "Let me compute."
    assert calls[0].name == "python" and calls[0].arguments == {"code": "print(6*7)"}
    assert calls[1].name == "" and calls[1].error and calls[1].error.startswith("not JSON")
    _, [nameless] = split_hermes('<tool_call>{"arguments": {}}</tool_call>')
    assert nameless.error == "no tool name"
    assert split_hermes("no calls here") == ("no calls here", [])


def test_a_call_in_a_wrong_tag_is_still_a_call() -> None:
    """Seen with the embedded 1.5B: its call wrapped in the template's <tools> tag."""
    text = 'Step 1.\n<tools>\n{"name": "python", "arguments": {"code": "print(2/5)"}}\n</tools>'
    rest, [call] = split_hermes(text)
    assert rest == "Step 1." and call.name == "python" and call.arguments == {"code": "print(2/5)"}
    # A tool definition echoed back, or broken JSON, stays text.
    echoed = '<tools>{"type": "function", "function": {"name": "python"}}</tools>'
    assert split_hermes(echoed) == (echoed, [])
    assert split_hermes("<tool>{not json}</tool>") == ("<tool>{not json}</tool>", [])


def test_gateway_returns_tool_calls_and_replays_them_from_cache(tmp_path: Path) -> None:
    gw = Gateway(LLMConfig(cache_dir=tmp_path / "cache", calls_log=tmp_path / "calls.jsonl"))
    script = [{"tool_calls": [{"name": "python", "arguments": {"code": "print(1)"}}]}]
    with fake_model(script) as model:
        first = gw.complete_full("hi", model=model, tools=TOOLS)
        again = gw.complete_full("hi", model=model, tools=TOOLS)
        assert model.calls == 1
    assert first.text == "" and [c.name for c in first.tool_calls] == ["python"]
    assert first.tool_calls[0].arguments == {"code": "print(1)"}
    assert again.cache_hit and again.tool_calls == first.tool_calls
    records = read_calls(tmp_path / "calls.jsonl")
    assert [r.cache_hit for r in records] == [False, True]


def test_gateway_without_tools_keeps_json_text_as_text(tmp_path: Path) -> None:
    gw = Gateway(LLMConfig(cache=False, calls_log=tmp_path / "calls.jsonl"))
    canonical = reply_text("x", [make_call("python", {})])
    with fake_model([canonical]) as model:
        result = gw.complete_full("hi", model=model)
    assert result.text == canonical and result.tool_calls == []
