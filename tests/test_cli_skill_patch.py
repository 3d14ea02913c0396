"""CLI: trace2skill skill validate|sections and patch apply|check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
CSV_REPORT = FIXTURES / "skills" / "csv-report"
PATCHES = FIXTURES / "patches"


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture
def skill_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "csv-report"
    shutil.copytree(CSV_REPORT, folder)
    return folder


@pytest.mark.parametrize(
    "command",
    [
        ["skill"],
        ["skill", "validate"],
        ["skill", "sections"],
        ["patch"],
        ["patch", "apply"],
        ["patch", "check"],
    ],
)
def test_every_help_has_an_example(command: list[str]) -> None:
    code, out, _ = invoke(*command, "--help")
    assert code == 0
    assert "Example" in out
    assert "trace2skill " + command[0] in out


def test_validate_good_skill() -> None:
    code, out, _ = invoke("skill", "validate", CSV_REPORT)
    assert code == 0
    assert "valid (0 errors, 0 warnings)" in out


def test_validate_lists_issues_and_fails(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "SKILL.md").write_text("---\nname: other\ndescription: d\nversion: 1\n---\n")
    code, out, _ = invoke("skill", "validate", folder)
    assert code == 1
    assert "[unknown-field]" in out and "[name-mismatch]" in out
    assert "invalid (2 errors, 0 warnings)" in out
    code, out, _ = invoke("skill", "validate", folder, "--json")
    assert code == 1
    assert {i["code"] for i in json.loads(out)} == {"unknown-field", "name-mismatch"}


def test_validate_budget_options(skill_dir: Path) -> None:
    code, out, _ = invoke("skill", "validate", skill_dir, "--max-skill-lines", "10")
    assert code == 1 and "[too-long]" in out
    code, out, _ = invoke("skill", "validate", skill_dir, "--max-reference-lines", "3")
    assert code == 1 and "references/column-types.md" in out


def test_validate_missing_path(tmp_path: Path) -> None:
    code, out, _ = invoke("skill", "validate", tmp_path / "nope")
    assert code == 1 and "Path does not exist" in out


def test_a_file_given_for_the_skill_folder_names_the_folder(tmp_path: Path) -> None:
    """A new-user trial: `skill validate path/SKILL.md` said "Not a directory" with no hint.
    Every command taking a skill folder now names the folder to pass instead."""
    skill_md = CSV_REPORT / "SKILL.md"
    hint = f"is a file, not a skill folder: pass the folder that holds SKILL.md, {CSV_REPORT}"
    code, out, _ = invoke("skill", "validate", skill_md)
    assert code == 1 and f"[not-a-folder] {skill_md} {hint}" in out
    reference = CSV_REPORT / "references" / "column-types.md"
    assert hint in invoke("skill", "validate", reference)[1]  # the skill's folder, two up
    patch = PATCHES / "append_to_section.json"
    for args in (
        ["skill", "sections", skill_md],
        ["patch", "check", patch, skill_md],
        ["patch", "apply", patch, skill_md, "--dry-run"],
        # These two had click's bare "Directory ... is a file." (exit 2).
        ["repo", "snapshot", skill_md, "--run", "x"],
        ["analyse", tmp_path / "run", "--skill", skill_md],
        ["evolve", skill_md, "--suite", "gsm8k", "--estimate", "--runs-dir", tmp_path],
    ):
        code, _, err = invoke(*args)
        assert code == 1 and err == f"Error: {skill_md} {hint}\n", (args, err)
    assert list(tmp_path.iterdir()) == []


def test_sections_table_and_json() -> None:
    code, out, _ = invoke("skill", "sections", CSV_REPORT)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "LEVEL", "LINES", "HEADING"]
    assert any(
        line.split()[:3] == ["csv-report/workflow/inspect-the-data", "3", "17-25"] for line in lines
    )
    code, out, _ = invoke("skill", "sections", CSV_REPORT, "--json")
    data = json.loads(out)
    assert data[1]["id"] == "csv-report" and data[1]["start_line"] == 9
    code, out, _ = invoke("skill", "sections", CSV_REPORT, "--file", "references/column-types.md")
    assert code == 0 and "column-types/dates" in out


def test_sections_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = invoke("skill", "sections", tmp_path / "empty")
    assert code == 1
    assert err.startswith("Error: ") and err.count("\n") == 1
    code, _, err = invoke("skill", "sections", CSV_REPORT, "--file", "references/none.md")
    assert code == 1 and "has no file" in err


def test_patch_apply_dry_run_writes_nothing(skill_dir: Path) -> None:
    before = snapshot(skill_dir)
    code, out, _ = invoke("patch", "apply", PATCHES / "add_section.json", skill_dir, "--dry-run")
    assert code == 0
    assert "[applied ] edit 0 add_section SKILL.md" in out
    assert "+## Verify" in out and "--- a/SKILL.md" in out
    assert "dry run: nothing written" in out
    assert snapshot(skill_dir) == before


def test_patch_apply_writes(skill_dir: Path) -> None:
    code, out, _ = invoke("patch", "apply", PATCHES / "create.json", skill_dir)
    assert code == 0, out
    assert "wrote 2 file(s): SKILL.md, references/dates.md" in out
    assert (skill_dir / "references" / "dates.md").exists()
    assert "references/dates.md" in (skill_dir / "SKILL.md").read_text()


def test_patch_apply_rejected_exits_1_and_changes_nothing(tmp_path: Path, skill_dir: Path) -> None:
    patch = {
        "reasoning": "r",
        "edits": [
            {
                "file": "SKILL.md",
                "op": "append_to_section",
                "target_section": "Pitfalls",
                "content": "- A.",
            },
            {"file": "scripts/summarise.py", "op": "delete_file"},
        ],
        "changelog_entries": [],
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(patch))
    before = snapshot(skill_dir)
    code, out, err = invoke("patch", "apply", path, skill_dir)
    assert code == 1
    assert "[REJECTED] edit 1 delete_file scripts/summarise.py: protected" in out
    assert err.startswith("Error: ") and "nothing written" in err and err.count("\n") == 1
    assert snapshot(skill_dir) == before
    code, out, _ = invoke("patch", "apply", path, skill_dir, "--allow-protected")
    assert code == 0, out
    assert not (skill_dir / "scripts" / "summarise.py").exists()


def test_patch_apply_bad_patch_file(tmp_path: Path, skill_dir: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"edits": [{"file": "SKILL.md", "op": "rewrite"}]}')
    before = snapshot(skill_dir)
    code, _, err = invoke("patch", "apply", path, skill_dir)
    assert code == 1
    assert "edit 0: unknown op 'rewrite'" in err and err.count("\n") == 1
    path.write_text("{")
    code, _, err = invoke("patch", "apply", path, skill_dir)
    assert code == 1 and "invalid JSON" in err
    code, _, err = invoke("patch", "apply", PATCHES / "create.json", tmp_path / "none")
    assert code == 1 and "does not exist" in err
    assert snapshot(skill_dir) == before


def test_patch_check(tmp_path: Path, skill_dir: Path) -> None:
    before = snapshot(skill_dir)
    code, out, _ = invoke("patch", "check", PATCHES / "delete_file.json", skill_dir)
    assert code == 0 and "2/2 edits applied" in out
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            {
                "edits": [
                    {"file": "SKILL.md", "op": "insert_after", "target_text": "zzz", "content": "x"}
                ]
            }
        )
    )
    code, out, _ = invoke("patch", "check", path, skill_dir)
    assert code == 1 and "anchor-missing" in out
    code, out, _ = invoke("patch", "check", path, skill_dir, "--json")
    payload = json.loads(out)
    assert code == 1 and payload["clean"] is False
    assert payload["edits"][0]["reason"] == "anchor-missing"
    assert snapshot(skill_dir) == before


def _break_encoding(folder: Path) -> None:
    (folder / "references" / "column-types.md").write_bytes(b"# Caf\xe9\n")


def _remove_skill_md(folder: Path) -> None:
    (folder / "SKILL.md").unlink()


def _rename_folder_name(folder: Path) -> None:
    text = (folder / "SKILL.md").read_text().replace("name: csv-report", "name: other")
    (folder / "SKILL.md").write_text(text)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_break_encoding, "references/column-types.md is not valid UTF-8"),
        (_remove_skill_md, "has no SKILL.md"),
    ],
)
def test_patch_apply_on_unloadable_skill_changes_nothing(
    skill_dir: Path, damage: object, message: str
) -> None:
    damage(skill_dir)  # type: ignore[operator]
    before = snapshot(skill_dir)
    code, _, err = invoke("patch", "apply", PATCHES / "append_to_section.json", skill_dir)
    assert code == 1 and message in err and err.count("\n") == 1
    assert snapshot(skill_dir) == before


@pytest.mark.parametrize(
    ("old", "new", "code_name"),
    [
        ("name: csv-report", "name: other", "name-mismatch"),
        ("license: Apache-2.0", "version: 2", "unknown-field"),
        ("---\n\nUse this", "--\n\nUse this", "malformed-frontmatter"),
    ],
)
def test_patch_breaking_the_skill_is_withheld(
    tmp_path: Path, skill_dir: Path, old: str, new: str, code_name: str
) -> None:
    path = tmp_path / "p.json"
    edit = {"file": "SKILL.md", "op": "replace_in_section", "old_text": old, "content": new}
    path.write_text(json.dumps({"reasoning": "r", "edits": [edit]}))
    before = snapshot(skill_dir)
    code, out, err = invoke("patch", "apply", path, skill_dir)
    assert code == 1
    assert f": {code_name}: " in out and "withheld" in out
    assert "nothing written" in err
    assert snapshot(skill_dir) == before


def test_validate_reports_existing_damage(skill_dir: Path) -> None:
    _rename_folder_name(skill_dir)
    code, out, _ = invoke("skill", "validate", skill_dir)
    assert code == 1 and "[name-mismatch]" in out
    _break_encoding(skill_dir)
    code, out, _ = invoke("skill", "validate", skill_dir)
    assert code == 1 and "[encoding]" in out
