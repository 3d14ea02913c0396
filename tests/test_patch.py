"""Patch format, engine ops, guardrails, diff and writing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from toolkit.errors import PatchError, PatchRejected
from toolkit.patch import (
    OPS,
    Edit,
    Patch,
    PatchResult,
    apply_patch,
    load_patch,
    parse_patch,
    unified_diff,
    write_result,
)
from toolkit.skill import Budgets, Skill, load_skill, parse_markdown, validate_skill

FIXTURES = Path(__file__).parent / "fixtures"
CSV_REPORT = FIXTURES / "skills" / "csv-report"
PATCHES = FIXTURES / "patches"

SKILL_MD = """---
name: demo
description: A demo skill.
---

# Demo

Intro.

## Workflow

1. Inspect the data.
2. Compute.

```bash
python run.py
# comment, not a heading
```

### Details

Detail text.

## Pitfalls

- Units.
"""


def demo(**extra: str | bytes) -> Skill:
    files: dict[str, str | bytes] = {"SKILL.md": SKILL_MD, "scripts/run.py": "print(1)\n"}
    files.update(extra)
    return Skill.from_files("demo", files)


def edit(op: str, **fields: Any) -> dict[str, Any]:
    return {"file": "SKILL.md", "op": op, **fields}


def run(skill: Skill, *edits: dict[str, Any], **kwargs: Any) -> PatchResult:
    return apply_patch(skill, parse_patch({"reasoning": "r", "edits": list(edits)}), **kwargs)


def one(skill: Skill, single: dict[str, Any], **kwargs: Any) -> PatchResult:
    return run(skill, single, **kwargs)


def snapshot(folder: Path) -> dict[str, Any]:
    """Every path below folder with its bytes (or link target): byte-identity check."""
    state: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_file():
            state[rel] = (path.read_bytes(), path.stat().st_mode)
        else:
            state[rel] = "dir"
    return state


@pytest.fixture
def skill_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "csv-report"
    shutil.copytree(CSV_REPORT, folder)
    return folder


# --- format ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(PATCHES.glob("*.json")), ids=lambda p: p.stem)
def test_official_fixtures_load_and_apply_cleanly(path: Path, skill_dir: Path) -> None:
    raw = json.loads(path.read_text())
    assert set(raw) == {"reasoning", "edits", "changelog_entries"}  # the paper's format only
    assert all(set(e) <= set(Edit.model_fields) - {"id"} for e in raw["edits"])
    patch = load_patch(path)
    assert patch.official_dict() == raw
    result = apply_patch(load_skill(skill_dir), patch)
    assert result.clean, result.edits
    assert result.changed_files
    written = write_result(skill_dir, result)
    assert written == result.changed_files
    after = load_skill(skill_dir)
    assert after.files == result.proposed
    assert [i for i in validate_skill(after) if i.severity == "error"] == []


def test_fixtures_cover_every_op() -> None:
    ops = {e.op for p in PATCHES.glob("*.json") for e in load_patch(p).edits}
    assert ops == set(OPS)


def test_patch_ids_are_content_hashes() -> None:
    data = {"reasoning": "r", "edits": [edit("delete_section", target_section="Pitfalls")]}
    first, second = parse_patch(data), parse_patch(json.loads(json.dumps(data)))
    assert first.id == second.id and len(first.id or "") == 12
    assert first.edits[0].id == second.edits[0].id
    with_edit_ids = parse_patch({"reasoning": "r", "edits": [{**data["edits"][0], "id": "custom"}]})
    assert with_edit_ids.id == first.id  # edit ids do not change the patch id
    assert with_edit_ids.edits[0].id == "custom"
    other = parse_patch({**data, "reasoning": "different"})
    assert other.id != first.id
    assert parse_patch({**data, "id": "given"}).id == "given"


def test_support_defaults() -> None:
    data = {"reasoning": "r", "edits": []}
    assert parse_patch(data).support == 1
    assert parse_patch({**data, "sources": ["a", "b", "a"]}).support == 2
    assert parse_patch({**data, "sources": ["a"], "support": 5}).support == 5


def test_patch_json_round_trip() -> None:
    patch = parse_patch(
        {"reasoning": "r", "edits": [edit("create", file="references/x.md", content="# X\n")]}
    )
    again = Patch.model_validate_json(patch.model_dump_json())
    assert again == patch


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "invalid JSON at line 1 column 2"),
        ("[1, 2]", "expected a JSON object"),
        ('{"edits": {}}', "'edits' must be a list"),
        ('{"edits": [3]}', "edit 0: must be an object"),
        ('{"edits": [{"file": "SKILL.md", "op": "rewrite"}]}', "edit 0: unknown op 'rewrite'"),
        ('{"edits": [{"file": "SKILL.md"}]}', "edit 0: unknown op None"),
        (
            '{"edits": [{"file": "SKILL.md", "op": "delete_file"}, '
            '{"file": "SKILL.md", "op": "insert_after", "content": "x"}]}',
            "edit 1: insert_after needs 'target_text'",
        ),
        (
            '{"edits": [{"file": "SKILL.md", "op": "insert_after", "target_text": "", '
            '"content": "x"}]}',
            "edit 0: insert_after needs a non-empty 'target_text'",
        ),
        (
            '{"edits": [{"file": "SKILL.md", "op": "create", "content": 5}]}',
            "edit 0: field 'content'",
        ),
        ('{"edits": [{"op": "delete_file"}]}', "edit 0: field 'file'"),
        ('{"reasoning": 3, "edits": []}', "field 'reasoning'"),
        ('{"edits": [], "changelog_entries": "one"}', "field 'changelog_entries'"),
        (
            '{"edits": [{"file": "SKILL.md", "op": "replace_in_section", "old_text": "a", '
            '"content": "a"}]}',
            "identical",
        ),
    ],
)
def test_bad_patch_files_give_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(PatchError) as info:
        load_patch(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_patch_files(tmp_path: Path) -> None:
    with pytest.raises(PatchError, match="cannot read patch"):
        load_patch(tmp_path / "missing.json")
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"reasoning": "caf\xe9", "edits": []}')
    with pytest.raises(PatchError, match="not UTF-8"):
        load_patch(bad)


def test_unknown_fields_are_ignored() -> None:
    patch = parse_patch(
        {"reasoning": "r", "extra": 1, "edits": [edit("delete_file", note="ignored")]}
    )
    assert patch.edits[0].op == "delete_file"


# --- ops -------------------------------------------------------------------------------------


def proposed(result: PatchResult, path: str = "SKILL.md") -> str:
    assert result.all_applied, [r.message for r in result.edits]
    value = result.proposed[path]
    assert isinstance(value, str)
    return value


def test_insert_after_puts_content_after_the_anchor_line() -> None:
    result = one(demo(), edit("insert_after", target_text="Inspect the", content="   Sub-step."))
    assert "1. Inspect the data.\n   Sub-step.\n2. Compute.\n" in proposed(result)
    assert result.edits[0].original_lines == (12, 12)


def test_insert_after_multiline_anchor_and_section_scope() -> None:
    result = one(
        demo(),
        edit(
            "insert_after",
            target_section="workflow",
            target_text="1. Inspect the data.\n2. Compute.",
            content="3. Report.",
        ),
    )
    assert "2. Compute.\n3. Report.\n" in proposed(result)
    assert result.edits[0].original_lines == (12, 13)


def test_insert_before() -> None:
    result = one(demo(), edit("insert_before", target_text="2. Compute.", content="1b. Clean."))
    assert "1. Inspect the data.\n1b. Clean.\n2. Compute.\n" in proposed(result)


def test_append_to_section_goes_before_subsections_and_keeps_blank_lines() -> None:
    result = one(demo(), edit("append_to_section", target_section="Workflow", content="Then stop."))
    text = proposed(result)
    assert "# comment, not a heading\n```\nThen stop.\n\n### Details\n" in text


def test_append_to_last_section_and_heading_only_section() -> None:
    text = proposed(
        one(demo(), edit("append_to_section", target_section="Pitfalls", content="- B"))
    )
    assert text.endswith("- Units.\n- B\n")
    skill = Skill.from_files(
        "demo", {"SKILL.md": "---\nname: demo\ndescription: d\n---\n# A\n## Empty\n# B\n"}
    )
    text = proposed(one(skill, edit("append_to_section", target_section="Empty", content="Now.")))
    assert "## Empty\nNow.\n# B\n" in text


def test_replace_in_section_and_delete_text() -> None:
    result = one(
        demo(),
        edit(
            "replace_in_section",
            target_section="Workflow",
            old_text="python run.py",
            content="uv run run.py",
        ),
    )
    assert "```bash\nuv run run.py\n# comment" in proposed(result)
    result = one(demo(), edit("replace_in_section", old_text="Detail text.\n", content=""))
    assert "### Details\n\n\n## Pitfalls" in proposed(result)


def test_add_section_after_a_section_subtree_and_at_end() -> None:
    result = one(
        demo(), edit("add_section", after_section="Workflow", content="## Checks\n\nCheck.")
    )
    text = proposed(result)
    assert "Detail text.\n\n## Checks\n\nCheck.\n\n## Pitfalls\n" in text
    sections = parse_markdown(text).sections
    assert [s.id for s in sections][-2:] == ["demo/checks", "demo/pitfalls"]
    text = proposed(one(demo(), edit("add_section", content="## Last\nEnd.")))
    assert text.endswith("- Units.\n\n## Last\nEnd.\n")


def test_add_section_at_end_of_file_without_newline() -> None:
    skill = Skill.from_files("demo", {"SKILL.md": "---\nname: demo\ndescription: d\n---\n# A"})
    text = proposed(one(skill, edit("add_section", content="# B\n")))
    assert text.endswith("# A\n\n# B\n")


def test_add_section_needs_a_heading_and_a_new_path() -> None:
    result = one(demo(), edit("add_section", content="just text"))
    assert result.edits[0].reason == "bad-content"
    result = one(
        demo(), edit("add_section", after_section="Workflow", content="## Pitfalls\n\n- Other.")
    )
    assert result.edits[0].reason == "section-exists"


def test_delete_section_removes_its_subsections() -> None:
    result = one(demo(), edit("delete_section", target_section="## Workflow"))
    text = proposed(result)
    assert "Workflow" not in text and "Details" not in text
    assert "Intro.\n\n## Pitfalls\n" in text
    assert result.edits[0].original_lines == (10, 23)


def test_create_and_delete_file() -> None:
    result = run(
        demo(),
        edit("create", file="references/new.md", content="# New"),
        edit("append_to_section", target_section="Pitfalls", content="- See references/new.md."),
    )
    assert proposed(result, "references/new.md") == "# New\n"
    assert result.clean
    result = one(
        demo(**{"references/old.md": "# Old\n"}), edit("delete_file", file="references/old.md")
    )
    assert "references/old.md" not in result.proposed
    assert result.clean


def test_create_existing_and_delete_missing_are_rejected() -> None:
    result = one(demo(), edit("create", content="x"))
    assert result.edits[0].reason == "file-exists"
    result = one(demo(), edit("delete_file", file="references/none.md"))
    assert result.edits[0].reason == "missing-file"
    result = one(
        demo(),
        edit("append_to_section", file="references/none.md", target_section="A", content="x"),
    )
    assert result.edits[0].reason == "missing-file"


def test_edits_apply_progressively() -> None:
    result = run(
        demo(),
        edit("append_to_section", target_section="Pitfalls", content="- Dates."),
        edit("insert_after", target_text="- Dates.", content="- Time zones."),
    )
    assert proposed(result).endswith("- Units.\n- Dates.\n- Time zones.\n")


def test_crlf_file_stays_crlf() -> None:
    crlf = SKILL_MD.replace("\n", "\r\n")
    skill = Skill.from_files("demo", {"SKILL.md": crlf})
    result = run(
        skill,
        edit(
            "insert_after", target_text="1. Inspect the data.\n2. Compute.", content="3. A.\n4. B."
        ),
        edit("add_section", content="## New\n\nText."),
    )
    text = proposed(result)
    assert "2. Compute.\r\n3. A.\r\n4. B.\r\n" in text
    assert text.endswith("- Units.\r\n\r\n## New\r\n\r\nText.\r\n")
    assert "\n" not in text.replace("\r\n", "")


def test_anchor_on_last_line_without_newline_keeps_it_missing() -> None:
    skill = Skill.from_files(
        "demo", {"SKILL.md": "---\nname: demo\ndescription: d\n---\n# A\nlast"}
    )
    text = proposed(one(skill, edit("insert_after", target_text="last", content="after\n")))
    assert text.endswith("# A\nlast\nafter")


# --- guardrails ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../other/SKILL.md", "path-escape"),
        ("references/../../x.md", "path-escape"),
        ("/etc/passwd", "path-escape"),
        ("C:/x.md", "path-escape"),
        ("references\\x.md", "bad-path"),
        ("", "bad-path"),
        ("./", "bad-path"),
        ("scripts/run.py", "protected"),
        ("assets/logo.png", "protected"),
        ("notes.md", "protected"),
        ("references/data.json", "protected"),
    ],
)
def test_path_guardrails(path: str, reason: str) -> None:
    result = one(demo(), {"file": path, "op": "create", "content": "x"})
    assert result.edits[0].status == "rejected"
    assert result.edits[0].reason == reason
    assert result.proposed == result.original
    assert not result.clean


def test_dot_segments_are_normalised() -> None:
    result = one(
        demo(),
        edit("append_to_section", file="./SKILL.md", target_section="Pitfalls", content="- X"),
    )
    assert result.clean


def test_allow_protected_edits_scripts_but_not_binary_files() -> None:
    skill = demo(**{"assets/logo.png": b"\x89PNG\x00"})
    result = one(
        skill,
        {
            "file": "scripts/run.py",
            "op": "replace_in_section",
            "old_text": "print(1)",
            "content": "print(2)",
        },
        allow_protected=True,
    )
    assert result.clean and result.proposed["scripts/run.py"] == "print(2)\n"
    result = one(
        skill,
        {"file": "assets/logo.png", "op": "insert_after", "target_text": "PNG", "content": "x"},
        allow_protected=True,
    )
    assert result.edits[0].reason == "binary-file"


def test_symlink_leaving_the_skill_is_rejected(tmp_path: Path, skill_dir: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.md").write_text("# X\n")
    os.symlink(outside, skill_dir / "references" / "ext")
    before = snapshot(skill_dir)
    skill = load_skill(skill_dir)
    result = run(
        skill,
        edit("create", file="references/ext/new.md", content="# N\n"),
        edit("append_to_section", file="references/ext/x.md", target_section="X", content="y"),
    )
    assert [r.reason for r in result.edits] == ["path-escape", "path-escape"]
    with pytest.raises(PatchRejected):
        write_result(skill_dir, result)
    assert snapshot(skill_dir) == before
    assert (outside / "x.md").read_text() == "# X\n"
    # Also caught for an in-memory skill that only knows its root.
    in_memory = Skill.from_files("csv-report", skill.files, root=skill_dir)
    result = one(in_memory, edit("create", file="references/ext/new.md", content="# N\n"))
    assert result.edits[0].reason == "path-escape"


@pytest.mark.parametrize(
    ("single", "reason"),
    [
        (edit("insert_after", target_text="No such text", content="x"), "anchor-missing"),
        (
            edit("insert_after", target_text="Inspect", content="x", target_section="Pitfalls"),
            "anchor-missing",
        ),
        (edit("insert_before", target_text="Detail", content="x"), "anchor-ambiguous"),
        (edit("replace_in_section", old_text="e", content="E"), "anchor-ambiguous"),
        (
            edit("replace_in_section", old_text="Units", content="U", target_section="Nope"),
            "section-missing",
        ),
        (edit("append_to_section", target_section="Nope", content="x"), "section-missing"),
        (edit("delete_section", target_section="details/missing"), "section-missing"),
    ],
)
def test_anchor_and_section_guardrails(single: dict[str, Any], reason: str) -> None:
    result = one(demo(), single)
    assert result.edits[0].reason == reason
    assert result.edits[0].message
    assert result.proposed == result.original


def test_ambiguous_section_is_rejected() -> None:
    text = SKILL_MD + "\n## Details\n\nMore.\n"
    skill = Skill.from_files("demo", {"SKILL.md": text})
    result = one(skill, edit("append_to_section", target_section="Details", content="x"))
    assert result.edits[0].reason == "section-ambiguous"


def test_overlapping_edits_are_withheld_as_a_conflict() -> None:
    result = run(
        demo(),
        edit("replace_in_section", old_text="1. Inspect the data.", content="1. Look at the data."),
        edit("insert_after", target_text="1. Inspect", content="   Carefully."),
        edit("append_to_section", target_section="Pitfalls", content="- Rounding."),
    )
    assert [r.reason for r in result.edits] == ["conflict", "conflict", None]
    assert "edit 1" in result.edits[0].message and "edit 0" in result.edits[1].message
    assert "Inspect the data." in proposed_any(result)
    assert proposed_any(result).endswith("- Rounding.\n")


def proposed_any(result: PatchResult) -> str:
    value = result.proposed["SKILL.md"]
    assert isinstance(value, str)
    return value


def test_deleting_a_section_conflicts_with_edits_inside_it() -> None:
    result = run(
        demo(),
        edit("delete_section", target_section="Workflow"),
        edit("append_to_section", target_section="Details", content="More."),
    )
    assert [r.reason for r in result.edits] == ["conflict", "conflict"]


def test_insertions_at_one_spot_do_not_conflict() -> None:
    result = run(
        demo(),
        edit("insert_after", target_text="2. Compute.", content="3. A."),
        edit("insert_after", target_text="2. Compute.", content="4. B."),
    )
    assert "2. Compute.\n4. B.\n3. A.\n" in proposed(result)


@pytest.mark.parametrize(
    "single",
    [
        edit("insert_after", target_text="Intro.", content="```python\nprint()"),
        edit("replace_in_section", old_text="# comment, not a heading\n```", content="# no close"),
        edit("insert_after", target_text="python run.py", content="```"),
        edit("add_section", after_section="Demo", content="## Code\n\n~~~\nunclosed"),
    ],
)
def test_splitting_a_fenced_code_block_is_rejected(single: dict[str, Any]) -> None:
    result = one(demo(), single)
    assert result.edits[0].reason == "splits-code-fence"
    assert result.proposed == result.original


def test_balanced_code_and_edits_inside_code_are_fine() -> None:
    result = run(
        demo(),
        edit("insert_after", target_text="Intro.", content="\n```python\nprint()\n```"),
        edit("insert_after", target_text="python run.py", content="python check.py"),
    )
    assert result.clean


def test_re_adding_present_content_is_rejected() -> None:
    result = one(demo(), edit("append_to_section", target_section="Pitfalls", content="- Units."))
    assert result.edits[0].reason == "duplicate-content"


def test_result_over_budget_is_withheld_as_a_whole() -> None:
    result = run(
        demo(),
        edit("append_to_section", target_section="Pitfalls", content="- A."),
        edit("append_to_section", target_section="Workflow", content="B."),
        budgets=Budgets(skill_md_lines=SKILL_MD.count("\n") + 1),
    )
    assert result.all_applied
    assert not result.valid and not result.clean
    assert [i.code for i in result.issues] == ["too-long"]
    assert result.files == result.original  # withheld
    assert result.proposed != result.original  # still reviewable
    assert "withheld" in result.summary()


def test_result_breaking_the_frontmatter_is_withheld() -> None:
    result = one(demo(), edit("replace_in_section", old_text="name: demo", content="name: Demo"))
    assert result.all_applied and not result.valid
    assert {i.code for i in result.issues} >= {"invalid-name"}


def test_deleting_skill_md_is_withheld() -> None:
    result = one(demo(), edit("delete_file"))
    assert [i.code for i in result.issues] == ["missing-skill-md"]
    assert not result.valid


def test_existing_problems_do_not_block_unrelated_patches() -> None:
    long_skill = demo(**{"references/long.md": "x\n" * 400})
    assert any(i.code == "too-long" for i in validate_skill(long_skill))
    result = one(
        long_skill,
        edit("append_to_section", target_section="Pitfalls", content="- See references/long.md"),
    )
    assert result.clean


def test_new_reference_must_be_linked() -> None:
    result = one(demo(), edit("create", file="references/orphan.md", content="# Orphan\n"))
    assert result.all_applied and not result.valid
    assert [(i.code, i.edit) for i in result.issues] == [("unlinked-reference", 0)]


def test_strict_mode_raises() -> None:
    with pytest.raises(PatchRejected, match="anchor-missing"):
        one(demo(), edit("insert_after", target_text="zzz", content="x"), strict=True)
    assert one(demo(), edit("delete_section", target_section="Details"), strict=True).clean


# --- diff and writing ------------------------------------------------------------------------


def test_unified_diff_format() -> None:
    diff = unified_diff(
        {"SKILL.md": "a\nb", "old.md": "x\n", "bin": b"\x00"},
        {"SKILL.md": "a\nc\n", "new.md": "y\n", "bin": b"\x01"},
        prefix="skills/demo/",
    )
    assert "--- a/skills/demo/SKILL.md\n+++ b/skills/demo/SKILL.md\n" in diff
    assert "-b\n\\ No newline at end of file\n+c\n" in diff
    assert "--- /dev/null\n+++ b/skills/demo/new.md\n" in diff
    assert "--- a/skills/demo/old.md\n+++ /dev/null\n" in diff
    assert "Binary files a/skills/demo/bin and b/skills/demo/bin differ" in diff


def test_diff_applies_with_git(tmp_path: Path, skill_dir: Path) -> None:
    result = apply_patch(load_skill(skill_dir), load_patch(PATCHES / "create.json"))
    patch_file = tmp_path / "change.diff"
    patch_file.write_text(result.diff())
    subprocess.run(["git", "init", "-q"], cwd=skill_dir, check=True)
    subprocess.run(["git", "apply", str(patch_file)], cwd=skill_dir, check=True)
    assert load_skill(skill_dir).files == result.proposed


def test_write_result_rejected_patch_changes_nothing(skill_dir: Path) -> None:
    before = snapshot(skill_dir)
    result = run(
        load_skill(skill_dir),
        edit("append_to_section", target_section="Pitfalls", content="- Good edit."),
        edit("insert_after", target_text="missing anchor", content="x"),
    )
    with pytest.raises(PatchRejected, match="nothing written"):
        write_result(skill_dir, result)
    assert snapshot(skill_dir) == before


def test_write_result_withheld_result_changes_nothing(skill_dir: Path) -> None:
    before = snapshot(skill_dir)
    result = one(
        load_skill(skill_dir), edit("create", file="references/orphan.md", content="# O\n")
    )
    with pytest.raises(PatchRejected):
        write_result(skill_dir, result)
    assert snapshot(skill_dir) == before


def test_write_result_refuses_when_folder_changed(skill_dir: Path) -> None:
    result = one(
        load_skill(skill_dir), edit("append_to_section", target_section="Pitfalls", content="- X.")
    )
    (skill_dir / "SKILL.md").write_text((skill_dir / "SKILL.md").read_text() + "\nlocal change\n")
    before = snapshot(skill_dir)
    with pytest.raises(PatchError, match="changed on disk"):
        write_result(skill_dir, result)
    assert snapshot(skill_dir) == before


def test_write_result_creates_deletes_and_keeps_modes(skill_dir: Path) -> None:
    shutil.rmtree(skill_dir / "references")
    (skill_dir / "SKILL.md").chmod(0o600)
    skill_md = (
        (skill_dir / "SKILL.md")
        .read_text()
        .replace(
            "- [Column types](references/column-types.md)\n"
            "- [Old notes](references/old-notes.md)\n",
            "",
        )
    )
    (skill_dir / "SKILL.md").write_text(skill_md)
    result = run(
        load_skill(skill_dir),
        edit("create", file="references/dates.md", content="# Dates\n"),
        edit(
            "append_to_section",
            target_section="References",
            content="- [Dates](references/dates.md)",
        ),
        edit("delete_file", file="assets/logo.png"),
        allow_protected=True,
    )
    assert result.clean, result.edits
    write_result(skill_dir, result)
    assert (skill_dir / "references" / "dates.md").read_text() == "# Dates\n"
    assert not (skill_dir / "assets" / "logo.png").exists()
    assert (skill_dir / "SKILL.md").stat().st_mode & 0o777 == 0o600
    assert not list(skill_dir.rglob(".t2s-*"))
    assert load_skill(skill_dir).files == result.proposed


def test_content_line_endings_follow_the_file() -> None:
    result = one(demo(), edit("insert_after", target_text="2. Compute.", content="3. A.\r\n4. B."))
    assert "2. Compute.\n3. A.\n4. B.\n" in proposed(result)
    result = one(
        demo(), edit("insert_after", target_text="1. Inspect the data.\r\n2.", content="x")
    )
    assert result.clean


def test_over_budget_file_may_shrink_but_not_grow() -> None:
    long_skill = demo(**{"references/long.md": "# Long\n" + "x\n" * 400})
    long_skill = Skill.from_files(
        "demo",
        {**long_skill.files, "SKILL.md": SKILL_MD + "\nSee references/long.md.\n"},
    )
    shrink = one(
        long_skill,
        edit(
            "replace_in_section",
            file="references/long.md",
            old_text="# Long\nx\n",
            content="# Long\n",
        ),
    )
    assert shrink.clean
    grow = one(
        long_skill,
        edit("append_to_section", file="references/long.md", target_section="Long", content="y"),
    )
    assert [i.code for i in grow.issues] == ["too-long"] and not grow.valid
