"""The ``tools`` agent protocol: native function calling (pure: tool specs, prompts, checks).

The model gets OpenAI-style tool definitions (``tools=[...]`` through litellm) and answers
with tool calls: ``python(code)``, ``read_skill_file(section | path)`` when a skill can be
read, ``submit(answer)``. Providers with native function calling get the definitions as they
expect; the embedded models render them with their own chat template (Qwen2.5's Hermes
format, parsed by :func:`toolkit.llm.tool_calls.split_hermes`). A reply with no call may still
end the task with a ``FINAL ANSWER:`` line. :class:`toolkit.agent.Agent` runs the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolkit.errors import ToolkitError

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
    """Where the agent is in its step budget (1-based step), after a tool result."""
    if step >= max_turns:
        return f"Step {step}/{max_turns} (last): call submit with your answer now."
    return (
        f"Step {step}/{max_turns}. If this answers the question, call submit with it. "
        "Otherwise fix or extend the code."
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
