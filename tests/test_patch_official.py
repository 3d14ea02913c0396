"""Interop with the official Trace2Skill pipeline's patch shapes, and the budget options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from toolkit.cli import main
from toolkit.errors import PatchError
from toolkit.patch import apply_patch, load_patch, parse_patch
from toolkit.skill import Budgets, Skill, load_skill

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = FIXTURES / "official"
CSV_REPORT = FIXTURES / "skills" / "csv-report"

# Every field present, "" where unused: how the official writer emits an edit.
BLANK = {"target_section": "", "target_text": "", "old_text": "", "after_section": ""}


def official(op: str, **fields: str) -> dict[str, Any]:
    return {"file": "SKILL.md", "op": op, **BLANK, **fields}


@pytest.fixture
def skill_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "csv-report"
    shutil.copytree(CSV_REPORT, folder)
    return folder


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


# --- load_patch / parse_patch ----------------------------------------------------------------


def test_official_fixture_loads_applies_and_reports_each_normalization() -> None:
    patch = load_patch(OFFICIAL / "patch.json")
    assert [e.op for e in patch.edits] == [
        "insert_after",
        "add_section",
        "create",
        "append_to_section",
    ]
    notes = patch.normalizations
    assert "edit 0: op 'insertAfter' read as 'insert_after'" in notes
    assert "edit 2: op 'createFile' read as 'create'" in notes
    assert "edit 1: add_section heading '## Checking results' taken from target_section" in notes
    assert any(n.startswith("edit 0: empty target_section") for n in notes)
    first = patch.edits[0]
    assert first.target_section is None and first.old_text is None and first.after_section is None
    assert patch.edits[1].content == "## Checking results\n\n- Recompute one total by hand."
    assert patch.edits[1].target_section is None and patch.edits[1].after_section is None

    result = apply_patch(load_skill(CSV_REPORT), patch)
    assert result.clean, (result.summary(), [r.message for r in result.edits])
    skill_md = result.files["SKILL.md"]
    assert isinstance(skill_md, str)
    assert "3. Write the answer in one sentence.\n4. Check the units of every figure.\n" in skill_md
    # after_section "" means the end of the file.
    assert skill_md.endswith("## Checking results\n\n- Recompute one total by hand.\n")
    assert "- [Checks](references/checks.md)" in skill_md
    assert (
        result.files["references/checks.md"] == "# Checks\n\nCompare totals with the row count.\n"
    )


def test_normalizations_are_not_stored_and_do_not_change_the_id() -> None:
    ours = parse_patch(
        {"reasoning": "r", "edits": [{"file": "SKILL.md", "op": "create", "content": "x"}]}
    )
    theirs = parse_patch({"reasoning": "r", "edits": [official("createFile", content="x")]})
    assert ours.normalizations == [] and theirs.normalizations != []
    assert theirs.id == ours.id
    assert "normalizations" not in theirs.model_dump()


def test_our_own_patches_need_no_normalization() -> None:
    for path in (FIXTURES / "patches").glob("*.json"):
        assert load_patch(path).normalizations == [], path


@pytest.mark.parametrize(
    ("alias", "op"),
    [
        ("createFile", "create"),
        ("create_file", "create"),
        ("CreateFile", "create"),
        ("deleteFile", "delete_file"),
        ("delete-file", "delete_file"),
        ("removeFile", "delete_file"),
        ("insertAfter", "insert_after"),
        ("insertBefore", "insert_before"),
        ("appendToSection", "append_to_section"),
        ("replaceInSection", "replace_in_section"),
        ("addSection", "add_section"),
        ("deleteSection", "delete_section"),
        ("INSERT_AFTER", "insert_after"),
    ],
)
def test_op_aliases(alias: str, op: str) -> None:
    fields = {
        "target_text": "Intro.",
        "old_text": "Intro.",
        "target_section": "Demo",
        "content": "## New\n\nText.",
    }
    patch = parse_patch({"edits": [{"file": "SKILL.md", "op": alias, **fields}]})
    assert patch.edits[0].op == op
    assert patch.normalizations[0] == f"edit 0: op {alias!r} read as {op!r}"


def test_unknown_op_is_still_refused() -> None:
    with pytest.raises(PatchError, match="unknown op 'rewriteFile'"):
        parse_patch({"edits": [official("rewriteFile", content="x")]})


def test_empty_required_fields_are_still_errors() -> None:
    with pytest.raises(PatchError, match="insert_after needs a non-empty 'target_text'"):
        parse_patch({"edits": [official("insert_after", content="x")]})
    with pytest.raises(PatchError, match="append_to_section needs a non-empty 'target_section'"):
        parse_patch({"edits": [official("append_to_section", content="x")]})


def test_add_section_heading_in_target_section_keeps_a_given_level() -> None:
    patch = parse_patch(
        {
            "edits": [
                official(
                    "add_section",
                    target_section="### Deep",
                    after_section="Workflow",
                    content="Body.",
                )
            ]
        }
    )
    edit = patch.edits[0]
    assert edit.content == "### Deep\n\nBody."
    assert edit.after_section == "Workflow" and edit.target_section is None
    placed = apply_patch(load_skill(CSV_REPORT), patch)
    assert placed.clean
    text = placed.files["SKILL.md"]
    assert isinstance(text, str)
    assert text.index("### Deep") < text.index("## Pitfalls")


def test_add_section_of_our_shape_is_left_alone() -> None:
    # Content that starts with a heading: target_section keeps meaning "after this section".
    patch = parse_patch(
        {"edits": [official("add_section", target_section="Workflow", content="## Notes\n\nN.")]}
    )
    assert patch.edits[0].target_section == "Workflow"
    assert not any("heading" in n for n in patch.normalizations)


def test_fenced_model_reply_loads(tmp_path: Path) -> None:
    patch = load_patch(OFFICIAL / "reply.txt")
    assert patch.normalizations[0] == "read the JSON inside a ``` fence"
    assert patch.edits[0].content == "- Drop the header row before summing."
    assert apply_patch(load_skill(CSV_REPORT), patch).clean


def test_reply_with_text_around_a_bare_object_loads(tmp_path: Path) -> None:
    body = json.dumps({"edits": [official("deleteFile", file="references/old-notes.md")]})
    path = tmp_path / "reply.txt"
    path.write_text(f"Sure, here it is: {body} Hope it helps.")
    patch = load_patch(path)
    assert patch.edits[0].op == "delete_file"
    assert patch.normalizations[0] == "ignored the text around the JSON object"


def test_unrecoverable_reply_keeps_the_json_error(tmp_path: Path) -> None:
    path = tmp_path / "reply.txt"
    path.write_text("I could not find a fix. {not json}")
    with pytest.raises(PatchError, match="invalid JSON at line 1 column 1"):
        load_patch(path)


def test_strict_guards_still_hold_for_official_shapes() -> None:
    skill = load_skill(CSV_REPORT)
    cases = {
        "path-escape": official("createFile", file="../evil.md", content="x"),
        "protected": official("createFile", file="scripts/new.py", content="x"),
        "anchor-ambiguous": official("insertAfter", target_text="- ", content="- More."),
        "splits-code-fence": official(
            "insertAfter", target_text="# prints the header", content="```"
        ),
    }
    for reason, bad in cases.items():
        result = apply_patch(skill, parse_patch({"edits": [bad]}))
        assert result.edits[0].reason == reason, (reason, result.edits[0])


# --- budgets ---------------------------------------------------------------------------------

LONG_SKILL = "---\nname: long\ndescription: A long skill.\n---\n\n# Long\n\n" + "".join(
    f"Line {i}.\n" for i in range(863)
)


def long_skill_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "long"
    folder.mkdir()
    (folder / "SKILL.md").write_text(LONG_SKILL)
    return folder


def test_budgets_allow_an_insert_into_a_long_skill() -> None:
    skill = Skill.from_files("long", {"SKILL.md": LONG_SKILL})
    assert len(LONG_SKILL.splitlines()) == 870
    patch = parse_patch({"edits": [official("insertAfter", target_text="Line 5.", content="New.")]})
    assert not apply_patch(skill, patch).clean
    assert apply_patch(skill, patch, budgets=Budgets(skill_md_lines=1000)).clean


def test_cli_budget_options_and_normalization_lines(tmp_path: Path) -> None:
    folder = long_skill_dir(tmp_path)
    patch_file = tmp_path / "p.json"
    patch_file.write_text(
        json.dumps({"edits": [official("insertAfter", target_text="Line 5.", content="New.")]})
    )
    code, out = invoke("patch", "check", patch_file, folder)
    assert code == 1
    assert "[normalized] edit 0: op 'insertAfter' read as 'insert_after'" in out
    code, out = invoke("patch", "check", patch_file, folder, "--max-skill-lines", "1000", "--json")
    assert code == 0, out
    assert json.loads(out)["normalizations"][0] == "edit 0: op 'insertAfter' read as 'insert_after'"
    code, out = invoke("patch", "apply", patch_file, folder, "--max-skill-lines", "1000")
    assert code == 0, out
    assert "Line 5.\nNew.\nLine 6." in (folder / "SKILL.md").read_text()


def test_cli_reference_budget(tmp_path: Path, skill_dir: Path) -> None:
    patch_file = tmp_path / "p.json"
    patch_file.write_text(
        json.dumps(
            {"edits": [official("appendToSection", file="references/column-types.md",
                                target_section="Column types", content="More.\n" * 5)]}
        )
    )  # fmt: skip
    code, out = invoke("patch", "check", patch_file, skill_dir, "--max-reference-lines", "2")
    assert code == 1
    assert "references/column-types.md" in out
    code, _ = invoke("patch", "check", patch_file, skill_dir, "--max-reference-lines", "0")
    assert code == 2


# --- duplicate-content looks at the landing section's code only ------------------------------

CODE_SKILL = """---
name: code
description: Code examples.
---

# Code

## Load

```python
import pandas as pd
df = pd.read_csv("data.csv")
```

## Plot

```python
df.plot()
```

Keep plots small.
"""


def code_skill() -> Skill:
    return Skill.from_files("code", {"SKILL.md": CODE_SKILL})


def insert(anchor: str, content: str, section: str = "") -> dict[str, Any]:
    return official("insert_before", target_text=anchor, target_section=section, content=content)


def test_a_line_in_an_unrelated_code_block_is_not_a_duplicate() -> None:
    patch = parse_patch({"edits": [insert("df.plot()", "import pandas as pd", "Plot")]})
    result = apply_patch(code_skill(), patch)
    assert result.clean, [r.message for r in result.edits]
    text = result.files["SKILL.md"]
    assert isinstance(text, str)
    assert "```python\nimport pandas as pd\ndf.plot()\n```" in text
    # Applying the same patch again is a repeat: the line now stands in the landing section.
    again = apply_patch(Skill.from_files("code", {"SKILL.md": text}), patch)
    assert again.edits[0].reason == "duplicate-content"


def test_code_in_the_landing_section_and_prose_anywhere_still_count() -> None:
    same_section = parse_patch(
        {"edits": [insert('df = pd.read_csv("data.csv")', "import pandas as pd")]}
    )
    assert apply_patch(code_skill(), same_section).edits[0].reason == "duplicate-content"
    prose = parse_patch({"edits": [insert("import pandas", "Keep plots small.")]})
    assert apply_patch(code_skill(), prose).edits[0].reason == "duplicate-content"


def test_fenced_reply_whose_content_holds_a_code_fence(tmp_path: Path) -> None:
    body = json.dumps(
        {
            "edits": [
                official("appendToSection", target_section="Pitfalls", content="```bash\nls\n```")
            ]
        },
        indent=2,
    )
    path = tmp_path / "reply.md"
    path.write_text(f"Patch:\n\n```json\n{body}\n```\n")
    patch = load_patch(path)
    assert patch.edits[0].content == "```bash\nls\n```"
    assert apply_patch(load_skill(CSV_REPORT), patch).clean


def test_an_unknown_field_is_named_and_an_empty_patch_refused(tmp_path) -> None:
    """A typo such as 'after_sectoin' was ignored without a word; an empty edits list said
    "0/0 edits applied" and exited 0 (a new user's report)."""
    edit = {"file": "SKILL.md", "op": "add_section", "content": "## New\n\nx", "after_sectoin": "a"}
    patch = parse_patch({"edits": [edit]})
    assert patch.normalizations == [
        "edit 0: unknown field 'after_sectoin' ignored (did you mean 'after_section'?)"
    ]
    empty = tmp_path / "empty.json"
    empty.write_text('{"edits": []}')
    result = CliRunner().invoke(
        main, ["patch", "apply", str(empty), "skills/gsm8k-math", "--dry-run"]
    )
    assert result.exit_code == 1 and "the patch has no edits" in result.output
