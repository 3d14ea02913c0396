"""Property-based tests of parsing and patching (hypothesis)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.errors import PatchRejected
from toolkit.patch import apply_patch, parse_patch, write_result
from toolkit.skill import Skill, load_skill, parse_markdown, render, split_lines

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORDS = st.text(alphabet="abcdefgh ", min_size=1, max_size=12).map(str.strip).filter(bool)

# --- markdown round trip ---------------------------------------------------------------------

LINE = st.one_of(
    st.builds(lambda n, t: "#" * n + " " + t, st.integers(1, 7), WORDS),
    st.sampled_from(["```", "````", "~~~", "```python", "``` a`b", "   ```", "    # code"]),
    st.sampled_from(["", "   ", "---", "text", "# ", "#x", "Setext", "===", "\t#"]),
    WORDS,
)


@st.composite
def markdown(draw: st.DrawFn) -> str:
    lines = draw(st.lists(LINE, max_size=25))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    endings = draw(st.lists(st.sampled_from(["\n", "\r\n", newline]), min_size=len(lines)))
    text = "".join(line + end for line, end in zip(lines, endings, strict=False))
    if draw(st.booleans()):
        text = "---\nname: x\n---\n" + text
    if draw(st.booleans()) and text.endswith("\n"):
        text = text.rstrip("\r\n")
    return text


@SETTINGS
@given(markdown(), st.booleans())
def test_parse_render_round_trips(text: str, frontmatter: bool) -> None:
    doc = parse_markdown(text, frontmatter=frontmatter)
    assert render(doc) == text
    lines = split_lines(text)
    assert doc.line_count == len(lines)
    # Headed sections tile the file from the first heading to the end, without gaps.
    headed = doc.headed_sections
    for before, after in zip(headed, headed[1:], strict=False):
        assert after.start_line == before.end_line + 1
        assert before.subtree_end_line >= before.end_line
    if headed:
        assert headed[-1].end_line == len(lines)
    for section in doc.sections:
        assert section.text == "".join(lines[section.start_line - 1 : section.end_line])
    assert len({s.id for s in doc.sections}) == len(doc.sections)


# --- patches only touch what they target -----------------------------------------------------


@st.composite
def skill_and_patch(draw: st.DrawFn) -> tuple[Skill, list[dict[str, Any]], set[str]]:
    count = draw(st.integers(2, 6))
    bodies = [
        draw(st.lists(WORDS, min_size=1, max_size=4, unique=True).map(lambda ws: list(ws)))
        for _ in range(count)
    ]
    parts = ["---\nname: prop\ndescription: Property test skill.\n---\n\n# Prop\n\n"]
    for index, body in enumerate(bodies):
        lines = [f"s{index}w{k} {word}" for k, word in enumerate(body)]  # unique anchors
        parts.append(f"## Part {index}\n\n" + "\n".join(lines) + "\n\n")
    skill = Skill.from_files("prop", {"SKILL.md": "".join(parts)})
    targets = draw(st.lists(st.integers(0, count - 1), min_size=1, max_size=count, unique=True))
    edits: list[dict[str, Any]] = []
    for number, index in enumerate(targets):
        op = draw(
            st.sampled_from(
                [
                    "append_to_section",
                    "insert_after",
                    "insert_before",
                    "replace_in_section",
                    "delete_section",
                    "add_section",
                ]
            )
        )
        section = f"Part {index}"
        k = draw(st.integers(0, len(bodies[index]) - 1))
        line = f"s{index}w{k} {bodies[index][k]}"
        content = f"added {number} {draw(WORDS)}"
        edit: dict[str, Any] = {"file": "SKILL.md", "op": op, "target_section": section}
        if op == "append_to_section":
            edit["content"] = content
        elif op in ("insert_after", "insert_before"):
            edit.update(target_text=line, content=content)
        elif op == "add_section":
            edit = {
                "file": "SKILL.md",
                "op": op,
                "after_section": section,
                "content": f"## New {number}\n\n{content}\n",
            }
        elif op == "replace_in_section":
            edit.update(old_text=line, content=content)
        edits.append(edit)
    return skill, edits, {f"prop/part-{i}" for i in targets}


@SETTINGS
@given(skill_and_patch())
def test_valid_patch_leaves_untargeted_sections_alone(
    case: tuple[Skill, list[dict[str, Any]], set[str]],
) -> None:
    skill, edits, targeted = case
    result = apply_patch(skill, parse_patch({"reasoning": "p", "edits": edits}))
    assert result.clean, [r.message for r in result.edits]
    before = {s.id: s.text for s in skill.sections}
    after_text = result.proposed["SKILL.md"]
    assert isinstance(after_text, str)
    after = {s.id: s.text for s in parse_markdown(after_text).sections}
    for section_id, text in before.items():
        if section_id in targeted:
            continue
        if section_id == "prop":
            # The parent's own text stays; only its subtree changes.
            assert after[section_id] == text
        else:
            assert after[section_id] == text, section_id
    deleted = {e["target_section"] for e in edits if e["op"] == "delete_section"}
    for name in deleted:
        assert f"prop/{name.lower().replace(' ', '-')}" not in after


# --- rejected patches leave the folder byte-identical ----------------------------------------

BAD_EDITS = st.sampled_from(
    [
        {"file": "../escape.md", "op": "create", "content": "x"},
        {"file": "/abs/SKILL.md", "op": "delete_file"},
        {"file": "scripts/summarise.py", "op": "delete_file"},
        {"file": "SKILL.md", "op": "insert_after", "target_text": "nowhere", "content": "x"},
        {"file": "SKILL.md", "op": "replace_in_section", "old_text": "data", "content": "d"},
        {"file": "SKILL.md", "op": "append_to_section", "target_section": "Nope", "content": "x"},
        {"file": "references/none.md", "op": "delete_file"},
        {"file": "references/orphan.md", "op": "create", "content": "# Orphan\n"},
        {"file": "SKILL.md", "op": "insert_after", "target_text": "Pitfalls", "content": "```"},
    ]
)
GOOD_EDITS = st.sampled_from(
    [
        {
            "file": "SKILL.md",
            "op": "append_to_section",
            "target_section": "Pitfalls",
            "content": "- Dates need a time zone.",
        },
        {
            "file": "references/column-types.md",
            "op": "append_to_section",
            "target_section": "Dates",
            "content": "Reject dates before 1900.",
        },
        {"file": "SKILL.md", "op": "delete_section", "target_section": "Inspect the data"},
    ]
)
FIXTURE = Path(__file__).parent / "fixtures" / "skills" / "csv-report"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@settings(max_examples=30, deadline=None)
@given(
    st.lists(GOOD_EDITS, max_size=3, unique_by=lambda e: e["op"] + e["file"]), BAD_EDITS, st.data()
)
def test_rejected_patch_leaves_folder_byte_identical(
    good: list[dict[str, Any]], bad: dict[str, Any], data: st.DataObject
) -> None:
    edits = list(good)
    edits.insert(data.draw(st.integers(0, len(edits))), bad)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "csv-report"
        shutil.copytree(FIXTURE, folder)
        before = snapshot(folder)
        result = apply_patch(load_skill(folder), parse_patch({"reasoning": "r", "edits": edits}))
        assert not result.clean
        with pytest.raises(PatchRejected):
            write_result(folder, result)
        assert snapshot(folder) == before
