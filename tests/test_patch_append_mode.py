"""append_to_section placement (own text vs the official applicator's subtree), the hint of a
section-missing rejection, and the patch commands' config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli import main
from toolkit.errors import ToolkitError
from toolkit.patch import apply_patch, load_patch, parse_patch
from toolkit.skill import Budgets, Skill, load_skill

FRONT = "---\nname: demo\ndescription: A demo skill.\n---\n"
BODY = (
    "# Demo\n"
    "\n"
    "## Workflow\n"
    "\n"
    "Read the table first.\n"
    "\n"
    "### Inspect\n"
    "\n"
    "Print the columns.\n"
    "\n"
    "## Output\n"
    "\n"
    "Answer briefly.\n"
)


def skill(body: str = BODY) -> Skill:
    return Skill.from_files("demo", {"SKILL.md": FRONT + body})


def append(content: str, section: str = "Workflow") -> dict:
    return {
        "edits": [
            {"file": "SKILL.md", "op": "append_to_section", "target_section": section,
             "content": content}
        ]
    }  # fmt: skip


def body_of(result) -> str:
    return result.proposed["SKILL.md"][len(FRONT) :]


def test_own_text_mode_appends_before_the_first_subsection() -> None:
    result = apply_patch(skill(), parse_patch(append("Check units.")))
    assert result.clean, result.summary()
    assert "Read the table first.\nCheck units.\n\n### Inspect" in body_of(result)


def test_subtree_mode_gives_the_official_applicators_placement() -> None:
    # The official applicator (skill_evolver/skill_evolving_agent.py) finds the end of the
    # whole subtree, steps back over blank lines and inserts "" + the content lines there.
    result = apply_patch(skill(), parse_patch(append("Check units.")), append_mode="subtree")
    assert result.clean, result.summary()
    expected = BODY.replace(
        "Print the columns.\n\n## Output", "Print the columns.\n\nCheck units.\n\n## Output"
    )
    assert body_of(result) == expected


def test_subtree_mode_on_a_leaf_section_at_the_end_of_the_file() -> None:
    result = apply_patch(
        skill(), parse_patch(append("Cite the row.", "Output")), append_mode="subtree"
    )
    assert body_of(result) == BODY + "\nCite the row.\n"


def test_missing_section_suggests_the_nearest_ids() -> None:
    result = apply_patch(skill(), parse_patch(append("x", "Worklfow")))
    report = result.edits[0]
    assert report.reason == "section-missing"
    assert (
        "did you mean 'workflow'" in report.message.casefold()
        or "'demo/workflow'" in report.message
    )


def test_missing_section_names_the_damaged_line_that_only_looks_like_a_heading() -> None:
    broken = BODY.replace("### Inspect\n", "```### Inspect\n")  # fence glued to the heading
    result = apply_patch(skill(broken), parse_patch(append("x", "### Inspect")))
    report = result.edits[0]
    assert report.reason == "section-missing"
    assert "line 11 '```### Inspect'" in report.message  # file lines: frontmatter counts
    assert "opens a code fence and a heading at once" in report.message


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "SKILL.md").write_text(FRONT + BODY)
    patch = tmp_path / "p.json"
    patch.write_text(json.dumps(append("Check units.")))
    return folder, patch


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_cli_append_mode_flag(files: tuple[Path, Path]) -> None:
    folder, patch = files
    code, out = run("patch", "apply", patch, folder, "--append-mode", "subtree")
    assert code == 0, out
    assert "Print the columns.\n\nCheck units.\n" in (folder / "SKILL.md").read_text()


def test_config_file_sets_defaults_and_flags_win(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, patch = files
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trace2skill.toml").write_text(
        '[patch]\nmax-skill-lines = 10\nappend-mode = "subtree"\n'
    )
    code, out = run("patch", "check", patch, folder)
    assert code == 1 and "too-long" in out  # the discovered config's budget applies
    code, out = run("patch", "apply", patch, folder, "--max-skill-lines", "500")
    assert code == 0, out  # the flag wins over the file; the file's append mode still applies
    assert "Print the columns.\n\nCheck units.\n" in (folder / "SKILL.md").read_text()


def test_config_file_errors_are_one_line(files: tuple[Path, Path], tmp_path: Path) -> None:
    folder, patch = files
    bad = tmp_path / "bad.toml"
    bad.write_text("[patch]\nmax-lines = 3\n")
    code, out = run("patch", "check", patch, folder, "--config", bad)
    assert code == 2 and "unknown key(s) in [patch]: max-lines" in out
    bad.write_text('[patch]\nappend-mode = "sideways"\n')
    code, out = run("patch", "check", patch, folder, "--config", bad)
    assert code == 2 and "sideways" in out
    assert "Traceback" not in out


def test_project_file_sets_the_defaults_of_every_patch_application(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The analysts, the merge operator, ablation and pruning call apply_patch without
    # budgets: the project's [patch] table is what they get.
    folder, patch_file = files
    skill, patch = load_skill(folder), load_patch(patch_file)
    monkeypatch.chdir(tmp_path)
    assert apply_patch(skill, patch).clean
    (tmp_path / "trace2skill.toml").write_text("[patch]\nmax-skill-lines = 10\n")
    assert "too-long" in {i.code for i in apply_patch(skill, patch).issues}
    assert apply_patch(skill, patch, budgets=Budgets()).clean  # an explicit argument wins
    (tmp_path / "trace2skill.toml").write_text('[patch]\nappend-mode = "subtree"\n')
    assert "Print the columns.\n\nCheck units.\n" in apply_patch(skill, patch).proposed["SKILL.md"]
    (tmp_path / "trace2skill.toml").write_text("[patch]\nmax-skill-lines = 0\n")
    with pytest.raises(ToolkitError, match="max-skill-lines must be a whole number"):
        apply_patch(skill, patch)


# The official applicator's result for each op on BODY, worked out from its code
# (skill_evolver/skill_evolving_agent.py, _apply_patch_edit_to_content), given as official
# edits (every field present, "" when unused). Where both accept an edit the results agree
# line for line, blank lines aside (the official code doubles or drops separating blanks).
OFFICIAL_CASES = [
    (
        {"op": "insert_after", "target_section": "## Workflow",
         "target_text": "Read the table first.", "content": "Check units."},
        BODY.replace("Read the table first.\n", "Read the table first.\nCheck units.\n"),
    ),
    (
        {"op": "insert_before", "target_text": "Print the columns.", "content": "Look at dtypes."},
        BODY.replace("Print the columns.\n", "Look at dtypes.\nPrint the columns.\n"),
    ),
    (
        {"op": "replace_in_section", "target_section": "## Output",
         "old_text": "Answer briefly.", "content": "Answer in one line."},
        BODY.replace("Answer briefly.", "Answer in one line."),
    ),
    (
        {"op": "delete_section", "target_section": "### Inspect"},
        BODY.replace("\n### Inspect\n\nPrint the columns.\n\n", "\n"),
    ),
    (
        {"op": "add_section", "target_section": "## Checks", "after_section": "## Workflow",
         "content": "Verify the sum."},
        BODY.replace("\n## Output", "\n## Checks\n\nVerify the sum.\n\n## Output"),
    ),
    (
        {"op": "append_to_section", "target_section": "## Workflow", "content": "Check units."},
        BODY.replace("Print the columns.\n", "Print the columns.\n\nCheck units.\n"),
    ),
]  # fmt: skip


def _no_blanks(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(("edit", "official_body"), OFFICIAL_CASES, ids=lambda v: str(v)[:30])
def test_official_shaped_edit_gives_the_official_result(edit: dict, official_body: str) -> None:
    blank = {"target_section": "", "target_text": "", "old_text": "", "after_section": "",
             "content": ""}  # fmt: skip
    patch = parse_patch({"edits": [{"file": "SKILL.md", **blank, **edit}]})
    result = apply_patch(skill(), patch, append_mode="subtree")
    assert result.clean, result.summary()
    assert _no_blanks(body_of(result)) == _no_blanks(official_body)
