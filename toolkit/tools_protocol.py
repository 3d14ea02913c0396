"""The ``tools`` agent protocol: native function calling (pure: tool specs, prompts, checks).

The model gets OpenAI-style tool definitions (``tools=[...]`` through litellm) and answers
with tool calls: ``python(code)``, ``read_skill_file(section | path)`` when a skill can be
read, ``submit(answer)``. Providers with native function calling get the definitions as they
expect; the embedded models render them with their own chat template (Qwen2.5's Hermes
format, parsed by :func:`toolkit.llm.tool_calls.split_hermes`). :class:`toolkit.agent.Agent`
runs the loop. A call written as text (a ``{"name": ..., "arguments": ...}`` object in a
fenced block or on its own line) is taken as made. A reply with no call is read as the code
protocol reads it: a ``FINAL ANSWER:`` line ends the task, a fenced python block runs as a
python call. A second reply in a row with neither, or the last step, ends the task with the
model's latest own value (the line its code printed, else its prose's last line). The rules
and what they were measured to do: docs/protocols.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.llm.tool_calls import ToolCall, json_call

#: The tools the protocol offers (read_skill_file only with a skill).
TOOL_NAMES = ("python", "read_skill_file", "submit")

# Providers served in-process or scripted render tools themselves.
_OWN_TEMPLATES = ("local/", "fake/")


def tool_specs(with_skill: bool, skill_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The tool definitions sent with every call (OpenAI ``tools`` format)."""

    def spec(name: str, description: str, properties: dict[str, Any], required: list[str]):
        return {
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": {"type": "object", "properties": properties, "required": required},
            },
        }

    specs = [
        spec(
            "python",
            "Run Python code in a persistent session (variables stay; the task's files are in "
            "the current folder). Use print() to see results.",
            {"code": {"type": "string", "description": "The code to run."}},
            ["code"],
        )
    ]
    if with_skill:
        section: dict[str, Any] = {"type": "string", "description": "A section id of SKILL.md."}
        if skill_ids:
            section["enum"] = list(skill_ids)
        specs.append(
            spec(
                "read_skill_file",
                "Read one skill section (section = its id) or a skill file (path).",
                {
                    "section": section,
                    "path": {"type": "string", "description": "A file of the skill."},
                },
                [],
            )
        )
    specs.append(
        spec(
            "submit",
            "Give the final answer. This ends the task.",
            {"answer": {"type": "string", "description": "The answer only."}},
            ["answer"],
        )
    )
    return specs


def system_text(max_turns: int, with_skill: bool) -> str:
    """The tools protocol's instructions (the tool definitions travel separately)."""
    lines = [
        "You solve a task step by step by calling tools: python to compute, submit to answer.",
        "",
        "Rules:",
        "- First say in one sentence what is asked; then call one tool.",
        "- Do all arithmetic, counting and comparing in python, never in your head.",
        "- Read the python output before you submit; if it shows an error, fix the code.",
        "- Call submit as soon as you know the answer, with the answer only.",
        f"- You have at most {max_turns} steps.",
    ]
    if with_skill:
        lines.append("- read_skill_file reads a skill section by its id (ids are in [brackets]).")
    return "\n".join(lines)


def turn_text(step: int, max_turns: int) -> str:
    """Where the agent is in its step budget (1-based step).

    Only the first message and the last step get a note, as in the code protocol: the
    embedded 1.5B began its replies with a copied "Step 1/6." and narrated "Step 2/6." in
    prose instead of calling a tool.
    """
    if step >= max_turns:
        return f"Step {step}/{max_turns} (last): call submit with your answer now."
    if step > 1:
        return ""
    return f"You have {max_turns} steps. Call one tool now: python to compute, submit to answer."


# A call written as text: a JSON object with a name and arguments, alone in a fenced block
# (```json, ```python or bare), or on a line of its own (also inside a block).
_FENCED_OBJECT_RE = re.compile(r"```[\w-]*\s*(\{.*?\})\s*```", re.DOTALL)
_OBJECT_LINE_RE = re.compile(r"^[ \t]*(\{[ \t]*\"name\"[^\n]*\})[ \t]*$", re.MULTILINE)


def written_call(text: str) -> ToolCall | None:
    """The first tool call a reply wrote as text instead of making it, or None.

    The embedded 1.5B often put ``{"name": "submit", "arguments": {"answer": "5"}}`` in a
    fenced ```python or ```json block: run as Python it printed itself back, turn after turn,
    although the answer was right. Only an object whose ``name`` is a known tool counts.
    """
    bodies = [m.group(1) for m in _FENCED_OBJECT_RE.finditer(text)]
    bodies += [m.group(1) for m in _OBJECT_LINE_RE.finditer(text)]
    calls = (json_call(body, index, TOOL_NAMES) for index, body in enumerate(bodies))
    return next((call for call in calls if call is not None), None)


ONE_STEP = "one short step, one tool call"
"""What a tools-protocol reply cut at max_tokens is asked for instead
(:func:`toolkit.code_protocol.cut_at_limit`)."""


def compute_first(answer: str) -> str:
    """Sent back once when an answer comes before any python ran (``AgentConfig.code_check``):
    the 1.5B answered 4 of its first 5 GSM8K tasks in prose, computing nothing."""
    return (
        f"Your answer ({answer}) came before any python ran. Compute it first: call python "
        "with code that prints the answer, then submit."
    )


def no_call_text(model: str) -> str:
    """The observation for a reply with no tool call, no code and no answer.

    The embedded models write tool calls in their chat template's own form (Qwen2.5: Hermes
    ``<tool_call>`` tags), which a small model forgets once it starts writing prose; the
    example shows that form. Its code is a comment: copied as it is (the model copies
    examples), it prints nothing that could pass for an answer.
    """
    if not model.startswith("local/"):
        return "Error: no tool call. Call the python function to compute, or submit to answer."
    return (
        "Error: no tool call. Write one tool call exactly in this form:\n"
        '<tool_call>\n{"name": "python", "arguments": {"code": "# your code"}}\n</tool_call>\n'
        'or, when you know the answer, the submit tool with {"answer": ...}.'
    )


def copies_harness(text: str) -> bool:
    """True when a reply only repeats the harness's own words (an error or a step note) or
    names a tool: such a reply says nothing, and its last line is no answer.

    After one prose reply, the 1.5B answered "Error: call a tool (python, or submit with your
    answer)." to that very message until its steps ran out; another replied "python", then
    "submit", after its code had printed the right answer.
    """
    stripped = text.strip()
    first = stripped.splitlines()[0] if stripped else ""
    return (
        first.startswith("Error:")
        or re.match(r"(Step|You have) \d+", first) is not None
        or stripped.strip("`*. ").lower() in TOOL_NAMES
    )


def check_support(model: str) -> None:
    """Refuse, with one line, a model that litellm knows has no function calling.

    A model litellm does not know (a self-hosted server, a new release) is allowed: the call
    itself will say if tools are refused.

    Raises:
        ToolkitError: the model is known not to support function calling.
    """
    if model.startswith(_OWN_TEMPLATES):
        return
    from toolkit.llm._litellm import get_litellm

    try:
        info = get_litellm().get_model_info(model)
    except Exception:  # unknown to litellm's model map: let the provider decide
        return
    if info.get("supports_function_calling") is False:
        raise ToolkitError(
            f"{model} does not support native tool calls (litellm's model map); "
            "use --protocol code or --protocol json"
        )
