"""Echoed section use: distinctive skill lines reproduced in a reply (pure functions)."""

from __future__ import annotations

from toolkit.skill import Skill
from toolkit.skill_echo import echoed, normalise, skill_lines

SKILL_MD = """---
name: demo
description: A demo skill.
---

# Demo

## Loading
```python
df = pd.read_csv('table.csv', dtype=str, keep_default_na=False)
```
- Drop summary rows such as Total before counting anything.

## Counting
- Drop summary rows such as Total before counting anything.
- Count with len(df) after filtering the rows you need.
Short line.

## Worked example
df['g'] = df['Goals'].map(num)
"""
REFERENCE = (
    "# Cookbook\n\n## Dates\nParse dates with pd.to_datetime(df['Date'], errors='coerce').\n"
)


def _skill() -> Skill:
    return Skill(name="demo", files={"SKILL.md": SKILL_MD, "references/cookbook.md": REFERENCE})


def test_distinctive_lines_belong_to_one_section() -> None:
    lines = skill_lines(_skill())
    assert lines["df = pd.read_csv('table.csv', dtype=str, keep_default_na=False)"] == (
        "SKILL.md", "demo/loading"
    )  # fmt: skip
    assert lines["Count with len(df) after filtering the rows you need."] == (
        "SKILL.md", "demo/counting"
    )  # fmt: skip
    assert lines["Parse dates with pd.to_datetime(df['Date'], errors='coerce')."] == (
        "references/cookbook.md", "cookbook/dates"
    )  # fmt: skip
    # In two sections: nobody's. Too short, a fence or a heading: not distinctive.
    assert "Drop summary rows such as Total before counting anything." not in lines
    assert not any(line.startswith(("Short", "```", "#")) for line in lines)
    # A line the harness's own prompt also holds could be copied from there.
    harness = "Load it: df = pd.read_csv('table.csv', dtype=str, keep_default_na=False)"
    assert "df = pd.read_csv('table.csv', dtype=str, keep_default_na=False)" not in skill_lines(
        _skill(), harness
    )


def test_a_reply_echoes_the_sections_whose_lines_it_copies() -> None:
    lines = skill_lines(_skill())
    reply = (
        "I will load the table as the skill says.\n"
        "```python\n"
        "df  =  pd.read_csv('table.csv', dtype=str, keep_default_na=False)\n"
        "df['g'] = df['Goals'].map(num)\n"
        "print(df['g'].sum())\n```"
    )
    assert echoed(reply, lines) == [
        ("SKILL.md", "demo/loading"),
        ("SKILL.md", "demo/worked-example"),
    ]
    # A long line counts inside a longer reply line; unrelated text echoes nothing.
    inside = "Tip: - Count with len(df) after filtering the rows you need. Then print it."
    assert echoed(inside, lines) == [("SKILL.md", "demo/counting")]
    assert echoed("print(len(df))\nFINAL ANSWER: 3", lines) == []
    assert echoed(reply, {}) == []


def test_normalise_ignores_spacing_list_marks_and_ticks() -> None:
    assert normalise("  1.  Count   with len(df)  ") == "Count with len(df)"
    assert normalise("- `x = 1`") == "x = 1"
