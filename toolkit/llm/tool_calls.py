"""Native tool calls: one text form for the cache and calls log, and the Hermes-style parser.

A call made with ``tools=[...]`` may come back with OpenAI-style ``tool_calls`` instead of (or
beside) text. The gateway stores every reply as text (cache entries, calls log), so such a
reply is written as one canonical JSON object, :func:`reply_text`, and read back with
:func:`parse_reply_text`. Models served in-process (Qwen2.5 and other Hermes-format chat
templates) write their calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
in the text: :func:`split_hermes` takes them out.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, Field

_HERMES_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
# Tags a small model writes for a call by mistake: Qwen2.5's template wraps the tool
# definitions in <tools>, and the 1.5B sometimes wrapped its call in them too.
_ALIAS_RE = re.compile(r"<(tools|tool|function_call)>\s*(\{.*?\})\s*(?:</\1>|$)", re.DOTALL)


class ToolCall(BaseModel):
    """One tool call of a model reply."""

    id: str = Field(description="The call's id (the provider's, or a content hash).")
    name: str = Field(description="Tool name as the model wrote it.")
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="Arguments; {} when they did not parse."
    )
    error: str | None = Field(
        default=None, description="Why the arguments did not parse as a JSON object, if so."
    )

    def openai(self) -> dict[str, Any]:
        """The call as an OpenAI ``tool_calls`` entry (for the next request's history)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


def _call_id(name: str, arguments: Any, index: int) -> str:
    digest = hashlib.sha256(f"{index}:{name}:{arguments}".encode()).hexdigest()[:12]
    return f"call_{digest}"


def make_call(name: str, arguments: Any, index: int = 0, call_id: str | None = None) -> ToolCall:
    """A :class:`ToolCall` from a name and arguments given as a dict or a JSON string."""
    error = None
    parsed: Any = arguments
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            parsed, error = {}, f"arguments are not JSON ({exc.msg})"
    if not isinstance(parsed, dict):
        parsed, error = {}, "arguments are not a JSON object"
    return ToolCall(
        id=call_id or _call_id(name, arguments, index),
        name=str(name),
        arguments=parsed,
        error=error,
    )


def from_response_message(message: Any) -> list[ToolCall]:
    """The tool calls of a litellm response message (objects or dicts), in order."""
    raw = getattr(message, "tool_calls", None)
    if raw is None and isinstance(message, dict):
        raw = message.get("tool_calls")
    calls = []
    for index, item in enumerate(raw or []):
        data = item if isinstance(item, dict) else item.model_dump()
        function = data.get("function") or {}
        calls.append(
            make_call(
                function.get("name") or "",
                function.get("arguments") or "",
                index,
                data.get("id") or None,
            )
        )
    return calls


def reply_text(content: str, calls: list[ToolCall]) -> str:
    """The canonical text of a tool-enabled reply (what the cache and calls log keep)."""
    payload = {"content": content, "tool_calls": [c.model_dump() for c in calls]}
    return json.dumps(payload, ensure_ascii=False, sort_keys=True)


def parse_reply_text(text: str) -> tuple[str, list[ToolCall]]:
    """Inverse of :func:`reply_text`; any other text is plain content without calls."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return text, []
    if not isinstance(payload, dict) or set(payload) != {"content", "tool_calls"}:
        return text, []
    calls = [ToolCall.model_validate(c) for c in payload["tool_calls"]]
    return str(payload["content"] or ""), calls


def split_hermes(text: str) -> tuple[str, list[ToolCall]]:
    """Take ``<tool_call>{...}</tool_call>`` blocks out of a reply: (the rest, the calls).

    A block cut off before its closing tag (the reply hit ``max_tokens``) still counts; a
    block that is not a JSON object with a ``name`` becomes a call named ``""`` whose error
    says why, so the agent can tell the model. Without any ``<tool_call>`` block, a JSON
    object with a ``name`` and ``arguments`` in ``<tools>``, ``<tool>`` or
    ``<function_call>`` tags is taken as the call it was meant to be (anything else in such
    tags stays text).
    """
    if "<tool_call>" not in text:
        aliased = _aliased_calls(text)
        if aliased:
            return aliased
    calls: list[ToolCall] = []
    for index, match in enumerate(_HERMES_RE.finditer(text)):
        body = match.group(1)
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            calls.append(
                ToolCall(id=_call_id("", body, index), name="", error=f"not JSON ({exc.msg})")
            )
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            calls.append(ToolCall(id=_call_id("", body, index), name="", error="no tool name"))
            continue
        calls.append(make_call(data["name"], data.get("arguments", {}), index))
    rest = _HERMES_RE.sub("", text).strip()
    return rest, calls


def json_call(body: str, index: int = 0, names: Collection[str] | None = None) -> ToolCall | None:
    """The call a JSON object text spells, ``{"name": ..., "arguments": {...}}`` (arguments
    as an object or a JSON string), or None for anything else; with ``names``, only a call
    of one of them counts."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    if not isinstance(data.get("arguments"), dict | str):
        return None
    if names is not None and data["name"] not in names:
        return None
    return make_call(data["name"], data["arguments"], index)


def _aliased_calls(text: str) -> tuple[str, list[ToolCall]] | None:
    """Calls written in a wrong tag (see :data:`_ALIAS_RE`), or None when there are none."""
    calls: list[ToolCall] = []

    def take(match: re.Match[str]) -> str:
        call = json_call(match.group(2), len(calls))
        if call is None:
            return match.group(0)
        calls.append(call)
        return ""

    rest = _ALIAS_RE.sub(take, text).strip()
    return (rest, calls) if calls else None
