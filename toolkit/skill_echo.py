"""Skill text an agent reproduced in a reply: a usage signal that needs no citation.

With the skill in the system prompt, a section is used when the agent acts on it, and small
models rarely name the section they follow (the embedded 1.5B cited none in 10 S0 GSM8K
tasks) but often copy its lines: a worked example's code, a helper, a rule. A reply line that
equals a distinctive line of one section (or contains one, for long lines) records an
``echoed`` use of that section. Pure functions; the agent calls them once per step.

What counts as distinctive: at least :data:`MIN_CHARS` characters after normalising spaces,
not a heading or a fence, found in exactly one section of the skill, and not part of the
harness's own prompt text (which the agent could be copying instead).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from toolkit.skill import Skill, split_lines

MIN_CHARS = 24
"""Shortest skill line that counts (normalised): shorter ones are too common to attribute."""
CONTAINED_CHARS = 48
"""A skill line this long also counts when it is part of a longer reply line."""

_SPACE = re.compile(r"\s+")
_LIST_MARK = re.compile(r"^(?:[-*+]|\d+[.)])\s+")

SkillLines = Mapping[str, tuple[str, str | None]]
"""Normalised distinctive line -> (file, section id) of the one section it is in."""


def normalise(line: str) -> str:
    """One line compared loosely: spaces collapsed, list marks and code ticks dropped."""
    text = _SPACE.sub(" ", line).strip()
    text = _LIST_MARK.sub("", text)
    return text.strip("`").strip()


def skill_lines(skill: Skill, harness_text: str = "") -> dict[str, tuple[str, str | None]]:
    """The distinctive lines of a skill's markdown files, each with its section.

    ``harness_text`` (the prompts around the skill) removes lines the agent also saw outside
    the skill. A line repeated in two sections belongs to neither.
    """
    harness = normalise(harness_text)
    owners: dict[str, set[tuple[str, str | None]]] = {}
    for name, doc in skill.markdown_docs():
        for section in doc.headed_sections:
            for raw in split_lines(section.body):
                line = normalise(raw)
                if len(line) < MIN_CHARS or line.startswith(("#", "```", "~~~")):
                    continue
                if line in harness:
                    continue
                owners.setdefault(line, set()).add((name, section.id))
    return {line: next(iter(where)) for line, where in owners.items() if len(where) == 1}


def echoed(text: str, lines: SkillLines) -> list[tuple[str, str | None]]:
    """The sections (file, section id) whose distinctive lines ``text`` reproduces, in the
    order they first appear in it."""
    if not lines or not text:
        return []
    long_lines = [(line, where) for line, where in lines.items() if len(line) >= CONTAINED_CHARS]
    found: dict[tuple[str, str | None], None] = {}
    for raw in split_lines(text):
        line = normalise(raw)
        if len(line) < MIN_CHARS:
            continue
        where = lines.get(line)
        if where is not None:
            found.setdefault(where)
            continue
        for skill_line, place in long_lines:
            if skill_line in line:
                found.setdefault(place)
                break
    return list(found)
