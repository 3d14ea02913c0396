"""JSON extraction and validation for structured replies (pure functions)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from toolkit.llm.structured import (
    StructuredOutputError,
    extract_json,
    parse_structured,
    repair_messages,
)


class Point(BaseModel):
    x: int
    y: int


def test_plain_json() -> None:
    assert extract_json(' {"a": 1} ') == {"a": 1}


def test_fenced_block() -> None:
    text = 'Here you go:\n```json\n{"a": [1, 2]}\n```\nDone.'
    assert extract_json(text) == {"a": [1, 2]}


def test_first_balanced_object_with_braces_in_strings() -> None:
    text = 'I think {"s": "a } tricky { string", "n": {"m": 1}} and {"other": 2}'
    assert extract_json(text) == {"s": "a } tricky { string", "n": {"m": 1}}


def test_skips_unbalanced_prefix() -> None:
    assert extract_json('{broken then {"ok": true}') == {"ok": True}


def test_no_json_raises() -> None:
    with pytest.raises(StructuredOutputError, match="no JSON object"):
        extract_json("sorry, I cannot help")
    with pytest.raises(StructuredOutputError):
        extract_json('{"cut": "off')


def test_parse_structured_reports_fields() -> None:
    assert parse_structured('{"x": 1, "y": 2}', Point) == Point(x=1, y=2)
    with pytest.raises(StructuredOutputError, match="y: Field required"):
        parse_structured('{"x": 1}', Point)


def test_repair_messages_show_error_and_schema() -> None:
    msgs = [{"role": "user", "content": "give a point"}]
    out = repair_messages(msgs, "{x: 1}", "bad json", Point.model_json_schema())
    assert out[:1] == msgs and out[1] == {"role": "assistant", "content": "{x: 1}"}
    assert "bad json" in out[2]["content"] and '"y"' in out[2]["content"]
    assert msgs == [{"role": "user", "content": "give a point"}]  # input untouched
