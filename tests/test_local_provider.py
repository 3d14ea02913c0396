"""The local/ litellm provider's logic that needs no model weights."""

from __future__ import annotations

import sys
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from toolkit.errors import ModelInstallError
from toolkit.llm import local, model_store
from toolkit.llm._litellm import get_litellm


class Answer(BaseModel):
    value: int
    note: Annotated[str, Field(max_length=40)]


SCHEMA = Answer.model_json_schema()


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (None, None),
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "object"}),
        ({"type": "json_object", "schema": SCHEMA}, SCHEMA),
        ({"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}, SCHEMA),
        (Answer, SCHEMA),
    ],
)
def test_schema_from_response_format(response_format, expected):
    assert local.schema_from_response_format(response_format) == expected


def test_unsupported_response_format_is_rejected():
    with pytest.raises(ValueError, match="unsupported response_format type 'xml'"):
        local.schema_from_response_format({"type": "xml"})


def test_grammar_keeps_property_order_and_rejects_unconvertible_schemas():
    rules = dict(
        line.split(" ::= ", 1) for line in local._grammar(SCHEMA)._grammar.splitlines() if line
    )
    assert "value-kv" in rules["root"]
    assert rules["root"].index("value-kv") < rules["root"].index("note-kv")
    with pytest.raises(ValueError, match="cannot be turned into a llama.cpp grammar"):
        local._grammar({"type": "object", "properties": {"x": {"maxLength": 3}}})


def test_message_content_parts_are_joined():
    messages = [
        {"role": "system", "content": None},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    assert local._plain_messages(messages) == [
        {"role": "system", "content": ""},
        {"role": "user", "content": "ab"},
    ]


def test_missing_llama_cpp_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ModelInstallError, match=r"pip install 'trace2skill\[local\]'"):
        local._import_llama_cpp()


def test_bad_thread_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(local.N_THREADS_ENV, "many")
    with pytest.raises(ModelInstallError, match="TRACE2SKILL_LOCAL_THREADS must be a whole"):
        local._env_int(local.N_THREADS_ENV, 2)


def test_missing_model_is_a_non_retryable_error_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(model_store.MODELS_DIR_ENV, str(tmp_path))
    litellm = get_litellm()
    with pytest.raises(litellm.BadRequestError, match="trace2skill model install --tier small"):
        litellm.completion(
            model=model_store.SMALL_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=4,
        )


def test_tiers_are_priced_at_zero():
    litellm = get_litellm()
    for tier in model_store.TIERS.values():
        entry = litellm.model_cost[tier.model]
        assert entry["input_cost_per_token"] == entry["output_cost_per_token"] == 0.0


def test_concurrent_grammar_checks_leave_stdout_and_stderr_where_they_were():
    """llama-cpp-python's silencing dup2's fds 1/2 and restores what it saved: two threads
    interleaving it once left the process writing to /dev/null for good."""
    import os
    import threading
    import time
    import types

    pytest.importorskip("llama_cpp")
    first_inside = threading.Event()

    def init_grammar(*_args):
        first_inside.set()
        time.sleep(0.2)  # the second thread starts its check meanwhile
        return 1

    fake_cpp = types.SimpleNamespace(
        llama_sampler_init_grammar=init_grammar, llama_sampler_free=lambda _sampler: None
    )
    fake_llama = types.SimpleNamespace(_model=types.SimpleNamespace(vocab=None))
    fake_grammar = types.SimpleNamespace(_grammar="root ::= x", _root="root")

    def check():
        local._check_grammar(fake_cpp, fake_llama, fake_grammar)

    before = [os.fstat(fd) for fd in (1, 2)]
    streams = (sys.stdout, sys.stderr)
    saved = [os.dup(fd) for fd in (1, 2)]
    try:
        first = threading.Thread(target=check)
        first.start()
        first_inside.wait(5)
        time.sleep(0.05)
        second = threading.Thread(target=check)
        second.start()
        first.join()
        second.join()
        after = [os.fstat(fd) for fd in (1, 2)]
        now = (sys.stdout, sys.stderr)
    finally:  # put things back even when the check fails, or pytest loses its output
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        sys.stdout, sys.stderr = streams
    assert [(s.st_dev, s.st_ino) for s in after] == [(s.st_dev, s.st_ino) for s in before]
    assert now == streams


def test_tool_call_history_reaches_the_template_with_object_arguments():
    call = {"id": "c1", "type": "function",
            "function": {"name": "python", "arguments": '{"code": "print(1)"}'}}  # fmt: skip
    messages = [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
    ]
    assistant, tool = local._plain_messages(messages)
    assert assistant["tool_calls"][0]["function"] == {
        "name": "python",
        "arguments": {"code": "print(1)"},
    }
    assert tool == {"role": "tool", "content": "1", "tool_call_id": "c1"}
