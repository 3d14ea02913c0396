"""Structured output: JSON extraction from model text and the repair prompt (pure functions)."""

from __future__ import annotations

import copy
import functools
import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n(.*?)```", re.DOTALL)


class StructuredOutputError(ValueError):
    """The text holds no JSON object that validates against the response model."""


def response_schema(response_model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``response_model`` as sent to providers and hashed into cache keys.

    Built once per class (pydantic takes ~10 ms for a patch-sized model, paid on every call
    otherwise); each caller gets its own copy, since providers may adjust it.
    """
    return copy.deepcopy(_schema_of(response_model))


@functools.lru_cache(maxsize=256)
def _schema_of(response_model: type[BaseModel]) -> dict[str, Any]:
    return response_model.model_json_schema()


def _first_balanced_object(text: str) -> str | None:
    """The first ``{...}`` span with balanced braces (string-aware), or None."""
    start = text.find("{")
    while start != -1:
        depth = 0
        in_string = False
        escaped = False
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    candidate = text[start : i + 1]
                    try:
                        json.loads(candidate)
                    except json.JSONDecodeError:
                        break
                    return candidate
        start = text.find("{", start + 1)
    return None


def extract_json(text: str) -> Any:
    """Return the JSON value in ``text``: the whole text, a fenced ```json block, or the first
    balanced ``{...}`` object. Raises :class:`StructuredOutputError` if there is none."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    for block in _FENCE.findall(text):
        try:
            return json.loads(block)
        except json.JSONDecodeError:
            continue
    candidate = _first_balanced_object(text)
    if candidate is not None:
        return json.loads(candidate)
    snippet = stripped[:80] + ("..." if len(stripped) > 80 else "")
    raise StructuredOutputError(f"no JSON object found in the reply (starts {snippet!r})")


def parse_structured(text: str, response_model: type[T]) -> T:
    """Extract JSON from ``text`` and validate it as ``response_model``.

    Raises:
        StructuredOutputError: no JSON found, or it does not validate (message lists the
            validation errors, compact enough to show the model in a repair round).
    """
    value = extract_json(text)
    try:
        return response_model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()[:10]
        )
        raise StructuredOutputError(f"the JSON does not match the schema: {problems}") from None


def schema_instruction(schema: dict[str, Any]) -> str:
    """A system-prompt line asking for JSON only, for providers without native schema support."""
    return (
        "Reply with a single JSON object and nothing else. It must match this JSON schema:\n"
        + json.dumps(schema, separators=(",", ":"))
    )


def repair_messages(
    messages: list[dict[str, Any]], bad_reply: str, error: str, schema: dict[str, Any]
) -> list[dict[str, Any]]:
    """The conversation for the one repair round: the bad reply and what was wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": bad_reply},
        {
            "role": "user",
            "content": (
                f"Your reply could not be used: {error}\n"
                "Reply again with only a complete JSON object matching this JSON schema:\n"
                + json.dumps(schema, separators=(",", ":"))
            ),
        },
    ]
