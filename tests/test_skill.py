"""Skill model: markdown parsing, loading, section lookup, validation."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import skills_ref

from toolkit.errors import SectionLookupError, SkillError
from toolkit.skill import (
    PREAMBLE_ID,
    Budgets,
    Skill,
    _one_line_yaml_error,
    find_section,
    has_errors,
    load_skill,
    parse_markdown,
    render,
    split_lines,
    validate_dir,
    validate_skill,
)

FIXTURES = Path(__file__).parent / "fixtures" / "skills"
CSV_REPORT = FIXTURES / "csv-report"


def ids(text: str, frontmatter: bool = False) -> list[str]:
    return [s.id for s in parse_markdown(text, frontmatter=frontmatter).sections]


# --- parsing ---------------------------------------------------------------------------------


def test_sections_tree_lines_and_text() -> None:
    text = (
        "---\nname: x\ndescription: y\n---\n"  # lines 1-4
        "\nIntro line.\n\n"  # 5-7 preamble
        "# Title\n\nBody.\n\n"  # 8-11
        "## Workflow\n\n1. Step.\n\n"  # 12-15
        "### Inspect the data ##\n\nLook.\n"  # 16-18
    )
    doc = parse_markdown(text)
    assert doc.frontmatter_raw == "---\nname: x\ndescription: y\n---\n"
    by_id = {s.id: s for s in doc.sections}
    assert list(by_id) == [
        PREAMBLE_ID,
        "title",
        "title/workflow",
        "title/workflow/inspect-the-data",
    ]
    pre = by_id[PREAMBLE_ID]
    assert (pre.start_line, pre.end_line, pre.level, pre.text) == (5, 7, 0, "\nIntro line.\n\n")
    title = by_id["title"]
    assert (title.start_line, title.end_line, title.subtree_end_line) == (8, 11, 18)
    assert title.text == "# Title\n\nBody.\n\n"
    assert title.body == "\nBody.\n\n"
    inspect = by_id["title/workflow/inspect-the-data"]
    assert inspect.heading == "Inspect the data"  # closing #s stripped
    assert inspect.path == ["Title", "Workflow", "Inspect the data"]
    assert inspect.parent == "title/workflow"
    assert (inspect.start_line, inspect.end_line, inspect.level) == (16, 18, 3)
    assert doc.line_count == 18
    assert render(doc) == text


def test_blank_preamble_is_not_a_section_but_round_trips() -> None:
    text = "---\nname: x\n---\n\n\n# A\n"
    doc = parse_markdown(text)
    assert [s.id for s in doc.sections] == ["a"]
    assert doc.preamble == "\n\n"
    assert render(doc) == text


def test_duplicate_heading_paths_get_numbered_ids() -> None:
    text = "# A\n## Step\n## Step\n### Sub\n## Step\n# A\n## Step\n"
    assert ids(text) == ["a", "a/step", "a/step-2", "a/step-2/sub", "a/step-3", "a-2", "a-2/step"]


def test_duplicate_suffix_does_not_collide_with_real_heading() -> None:
    assert ids("# Step 2\n# Step\n# Step\n") == ["step-2", "step", "step-3"]


def test_skipped_levels_take_nearest_lower_parent() -> None:
    doc = parse_markdown("# A\n### C\n## B\n")
    assert [(s.id, s.parent) for s in doc.sections] == [("a", None), ("a/c", "a"), ("a/b", "a")]


@pytest.mark.parametrize(
    "text",
    [
        "# A\n```\n# not a heading\n```\n## B\n",
        "# A\n~~~python\n# not a heading\n~~~\n## B\n",
        "# A\n````\n```\n# not a heading\n```\n````\n## B\n",  # shorter fence does not close
        "# A\n```\n# inside\n~~~\n# still inside\n```\n## B\n",  # other char does not close
        "# A\n  ```\n# inside\n   ```\n## B\n",  # indented fences (<= 3 spaces)
    ],
)
def test_headings_in_fenced_code_are_not_sections(text: str) -> None:
    assert ids(text) == ["a", "a/b"]


def test_unclosed_fence_runs_to_end_of_file() -> None:
    assert ids("# A\n```\n# hidden\n## hidden too\n") == ["a"]


def test_backtick_fence_with_backtick_in_info_is_not_a_fence() -> None:
    # "``` a`b" is inline code per CommonMark, so the next line is a real heading.
    assert ids("# A\n``` a`b\n## B\n") == ["a", "a/b"]


def test_fence_closer_with_info_string_does_not_close() -> None:
    assert ids("# A\n```\n```python\n# in code\n```\n## B\n") == ["a", "a/b"]


def test_setext_headings_are_not_sections() -> None:
    # Documented limitation: only ATX headings start sections.
    text = "# A\nSetext\n======\nOther\n------\n"
    doc = parse_markdown(text)
    assert [s.id for s in doc.sections] == ["a"]
    assert doc.sections[0].text == text


@pytest.mark.parametrize(
    ("line", "is_heading"),
    [
        ("#No space", False),
        ("####### seven", False),
        ("    # four spaces", False),
        ("   # three spaces", True),
        ("#", True),
        ("#\tTab", True),
    ],
)
def test_atx_heading_rules(line: str, is_heading: bool) -> None:
    sections = parse_markdown(f"intro\n{line}\n", frontmatter=False).headed_sections
    assert bool(sections) is is_heading


def test_empty_heading_gets_a_slug() -> None:
    assert ids("#\n# !!!\n") == ["section", "section-2"]


def test_crlf_round_trip_and_lines() -> None:
    text = "---\r\nname: x\r\n---\r\n# A\r\ntext\r\n## B\r\n"
    doc = parse_markdown(text)
    assert doc.newline == "\r\n"
    assert [(s.id, s.start_line, s.end_line) for s in doc.sections] == [("a", 4, 5), ("a/b", 6, 6)]
    assert doc.sections[0].heading == "A"
    assert render(doc) == text


def test_no_trailing_newline() -> None:
    text = "# A\ntext"
    doc = parse_markdown(text, frontmatter=False)
    assert doc.sections[0].end_line == 2
    assert doc.line_count == 2
    assert render(doc) == text


def test_split_lines_only_splits_on_newline() -> None:
    assert split_lines("a\fb\u2028c\r\nd") == ["a\fb\u2028c\r\n", "d"]
    assert "".join(split_lines("x\n\n")) == "x\n\n"


def test_frontmatter_only_for_skill_md_and_unclosed_reported() -> None:
    assert parse_markdown("---\n# A\n", frontmatter=False).frontmatter_raw is None
    doc = parse_markdown("---\nname: x\n# A\n")
    assert doc.frontmatter_raw is None
    assert doc.frontmatter_error is not None
    assert render(doc) == "---\nname: x\n# A\n"


# --- section lookup --------------------------------------------------------------------------

SECTIONS = parse_markdown(
    "# Guide\n## Workflow\n### Inspect the data\n## Notes\n### Inspect the data\n# Workflow\n",
    frontmatter=False,
).sections


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("guide/workflow", "guide/workflow"),
        ("## Workflow", "guide/workflow"),
        ("# Workflow", "workflow"),
        ("Notes", "guide/notes"),
        ("  notes  ", "guide/notes"),
        ("NOTES", "guide/notes"),
        ("notes/inspect-the-data", "guide/notes/inspect-the-data"),
        ("Guide > Notes > Inspect the data", "guide/notes/inspect-the-data"),
    ],
)
def test_find_section_rules(query: str, expected: str) -> None:
    assert find_section(SECTIONS, query).id == expected


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("Workflow", "section-ambiguous"),
        ("Inspect the data", "section-ambiguous"),
        ("inspect-the-data", "section-ambiguous"),
        ("Missing", "section-missing"),
        ("### Notes", "section-missing"),
        ("", "section-missing"),
    ],
)
def test_find_section_rejects_missing_and_ambiguous(query: str, reason: str) -> None:
    with pytest.raises(SectionLookupError) as info:
        find_section(SECTIONS, query)
    assert info.value.reason == reason


# --- loading ---------------------------------------------------------------------------------


def test_load_fixture_skill() -> None:
    skill = load_skill(CSV_REPORT)
    assert skill.name == "csv-report"
    assert set(skill.files) == {
        "SKILL.md",
        "references/column-types.md",
        "references/old-notes.md",
        "scripts/summarise.py",
        "assets/logo.png",
    }
    assert isinstance(skill.files["SKILL.md"], str)
    assert isinstance(skill.files["scripts/summarise.py"], str)
    assert isinstance(skill.files["assets/logo.png"], bytes)
    assert skill.metadata["name"] == "csv-report"
    assert skill.description.startswith("Summarise a CSV file")
    assert skill.section("Pitfalls").id == "csv-report/pitfalls"
    assert skill.section("Dates", file="references/column-types.md").id == "column-types/dates"
    assert validate_skill(skill) == []
    assert skills_ref.validate(CSV_REPORT) == []


def test_load_keeps_crlf_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "crlf"
    folder.mkdir()
    raw = b"---\r\nname: crlf\r\ndescription: d\r\n---\r\n# A\r\n"
    (folder / "SKILL.md").write_bytes(raw)
    skill = load_skill(folder)
    assert skill.files["SKILL.md"].encode() == raw
    assert validate_skill(skill) == []


@pytest.mark.parametrize("path", ["SKILL.md", "references/notes.md"])
def test_non_utf8_editable_file_is_a_clear_error(tmp_path: Path, path: str) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(CSV_REPORT, folder)
    (folder / path).write_bytes(b"# Caf\xe9\n")
    with pytest.raises(SkillError, match=path.replace(".", r"\.") + " is not valid UTF-8"):
        load_skill(folder)
    issues = validate_dir(folder)
    assert has_errors(issues)
    assert (issues[0].code, issues[0].file) == ("encoding", path)
    assert path in issues[0].message


def test_non_utf8_script_stays_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "csv-report"
    shutil.copytree(CSV_REPORT, folder)
    (folder / "scripts" / "latin1.py").write_bytes(b"# caf\xe9\n")
    assert load_skill(folder).files["scripts/latin1.py"] == b"# caf\xe9\n"


def test_from_files_rejects_non_utf8_skill_md() -> None:
    with pytest.raises(SkillError, match="SKILL.md"):
        Skill.from_files("x", {"SKILL.md": b"\xff\xfe"})


def test_missing_folder_and_missing_skill_md(tmp_path: Path) -> None:
    with pytest.raises(SkillError, match="does not exist"):
        load_skill(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SkillError, match="no SKILL.md"):
        load_skill(tmp_path / "empty")
    (tmp_path / "file.md").write_text("x")
    with pytest.raises(SkillError, match="is a file, not a skill folder"):
        load_skill(tmp_path / "file.md")


def test_symlinks_leaving_the_folder_are_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    (outside_dir / "x.md").write_text("# x\n")
    folder = tmp_path / "csv-report"
    shutil.copytree(CSV_REPORT, folder)
    os.symlink(secret, folder / "assets" / "secret.txt")
    os.symlink(outside_dir, folder / "references" / "linked")
    os.symlink(folder / "references" / "old-notes.md", folder / "references" / "alias.md")
    skill = load_skill(folder)
    assert skill.external_links == {"assets/secret.txt", "references/linked"}
    assert "assets/secret.txt" not in skill.files
    assert "references/linked/x.md" not in skill.files
    assert skill.files["references/alias.md"] == skill.files["references/old-notes.md"]
    # Validation says so (a link to /etc/passwd passed silently: a new user's report).
    warned = {i.file: i for i in validate_skill(skill) if i.code == "external-link"}
    assert set(warned) == {"assets/secret.txt", "references/linked"}
    assert warned["assets/secret.txt"].severity == "warning"
    assert f"link out of the skill folder (to {secret})" in warned["assets/secret.txt"].message


def test_a_byte_order_mark_and_a_large_file_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "csv-report"
    shutil.copytree(CSV_REPORT, folder)
    skill_md = folder / "SKILL.md"
    skill_md.write_text("\ufeff" + skill_md.read_text())
    (folder / "assets" / "blob.bin").write_bytes(b"\0" * 1_500_000)
    issues = validate_skill(load_skill(folder))
    # The BOM is the one error, named as such (the spec parser's "must start with ---" was
    # all a user saw, though the file visibly starts with ---).
    assert [(i.code, i.severity) for i in issues if i.severity == "error"] == [
        ("byte-order-mark", "error")
    ]
    [large] = [i for i in issues if i.code == "large-file"]
    assert large.file == "assets/blob.bin" and "1.5 MB" in large.message


# --- validation ------------------------------------------------------------------------------

GOOD_FM = "---\nname: {name}\ndescription: Does things.\n---\n# Body\n"


def make_skill(tmp_path: Path, folder: str, skill_md: str | None) -> Path:
    path = tmp_path / folder
    path.mkdir(parents=True)
    if skill_md is not None:
        (path / "SKILL.md").write_text(skill_md, encoding="utf-8", newline="")
    return path


AGREEMENT_CASES: dict[str, tuple[str, str | None]] = {
    "good": ("good", GOOD_FM.format(name="good")),
    "good-all-fields": (
        "full",
        "---\nname: full\ndescription: d\nlicense: MIT\ncompatibility: any\n"
        "allowed-tools: Bash\nmetadata:\n  author: me\n---\n",
    ),
    "good-unicode-name": ("données", GOOD_FM.format(name="données")),
    "good-crlf": ("crlf", GOOD_FM.format(name="crlf").replace("\n", "\r\n")),
    "missing-skill-md": ("nothing", None),
    "no-frontmatter": ("plain", "# Just markdown\n"),
    "unclosed-frontmatter": ("open", "---\nname: open\n"),
    "bad-yaml": ("bad", "---\nname: [unclosed\ndescription: x\n---\n"),
    "not-a-mapping": ("list", "---\n- a\n- b\n---\n"),
    "name-mismatch": ("folder", GOOD_FM.format(name="other")),
    "uppercase-name": ("Bad-Name", GOOD_FM.format(name="Bad-Name")),
    "double-hyphen": ("a--b", GOOD_FM.format(name="a--b")),
    "leading-hyphen": ("-a", GOOD_FM.format(name="-a")),
    "bad-chars": ("a_b", GOOD_FM.format(name="a_b")),
    "long-name": ("n" * 65, GOOD_FM.format(name="n" * 65)),
    "missing-description": ("nodesc", "---\nname: nodesc\n---\n"),
    "long-description": ("longd", f"---\nname: longd\ndescription: {'d' * 1025}\n---\n"),
    "extra-field": ("extra", "---\nname: extra\ndescription: d\nversion: 2\n---\n"),
    "long-compat": (
        "compat",
        f"---\nname: compat\ndescription: d\ncompatibility: {'c' * 501}\n---\n",
    ),
    "dash-in-value": ("dash", "---\nname: dash\ndescription: a---b\n---\n"),
    "duplicate-keys": ("dup", "---\nname: dup\nname: dup\ndescription: d\n---\n"),
}


@pytest.mark.parametrize("case", sorted(AGREEMENT_CASES))
def test_spec_issues_agree_with_skills_ref(tmp_path: Path, case: str) -> None:
    folder, skill_md = AGREEMENT_CASES[case]
    path = make_skill(tmp_path, folder, skill_md)
    # The same messages, a YAML error's made one line (its context and carets dropped).
    expected = [_one_line_yaml_error(m) for m in skills_ref.validate(path)]
    issues = validate_dir(path)
    assert [i.message for i in issues if i.spec] == expected
    if expected:
        assert has_errors(issues)
    elif case.startswith("good"):
        assert not has_errors(issues), issues


def test_frontmatter_the_spec_parser_misreads_is_our_error(tmp_path: Path) -> None:
    # skills-ref splits at the "---" inside the value and reads description "a": valid to it.
    path = make_skill(tmp_path, "dash", "---\nname: dash\ndescription: a---b\n---\n")
    assert skills_ref.validate(path) == []
    codes = [(i.code, i.spec) for i in validate_dir(path)]
    assert ("malformed-frontmatter", False) in codes


def test_a_yaml_error_is_one_line_naming_the_line(tmp_path: Path) -> None:
    """strictyaml's report was eight lines of context and carets, in its own wording."""
    flow = make_skill(tmp_path, "flow", "---\nname: flow\ndescription: d\ntags: [logs]\n---\n")
    (issue,) = validate_dir(flow)
    assert issue.code == "malformed-frontmatter" and "\n" not in issue.message
    assert "SKILL.md line 4" in issue.message and "put the value in quotes" in issue.message
    indent = make_skill(tmp_path, "indent", "---\nname: indent\ndescription: d\n  x: y\n---\n")
    (issue,) = validate_dir(indent)
    assert "\n" not in issue.message and "line 4" in issue.message


def test_specific_issue_codes(tmp_path: Path) -> None:
    path = make_skill(tmp_path, "folder", GOOD_FM.format(name="other"))
    assert [i.code for i in validate_dir(path)] == ["name-mismatch"]
    path = make_skill(tmp_path, "extra", "---\nname: extra\ndescription: d\nversion: 2\n---\n")
    assert [i.code for i in validate_dir(path)] == ["unknown-field"]
    assert [i.code for i in validate_dir(tmp_path / "nope")] == ["missing-path"]
    expected = {
        "uppercase-name": {"invalid-name"},
        "long-description": {"invalid-description"},
        "long-compat": {"invalid-compatibility"},
        "missing-description": {"missing-field"},
        "bad-yaml": {"malformed-frontmatter"},
    }
    for case, codes in expected.items():
        folder, skill_md = AGREEMENT_CASES[case]
        path = make_skill(tmp_path / "codes", folder, skill_md)
        assert {i.code for i in validate_dir(path) if i.spec} == codes, case


def test_budgets_are_enforced_and_configurable() -> None:
    head = GOOD_FM.format(name="big")
    files = {
        "SKILL.md": head + "line\n" * 20 + "[r](references/r.md)\n",
        "references/r.md": "x\n" * 12,
    }
    skill = Skill.from_files("big", files)
    assert validate_skill(skill) == []
    issues = validate_skill(skill, Budgets(skill_md_lines=10, reference_lines=12))
    assert [(i.code, i.file) for i in issues] == [("too-long", "SKILL.md")]
    issues = validate_skill(skill, Budgets(skill_md_lines=100, reference_lines=11))
    assert [(i.code, i.file) for i in issues] == [("too-long", "references/r.md")]
    assert "12 lines" in issues[0].message


def test_link_warnings() -> None:
    files = {
        "SKILL.md": GOOD_FM.format(name="links") + "See `references/missing.md`.\n",
        "references/orphan.md": "# Orphan\n",
    }
    issues = validate_skill(Skill.from_files("links", files))
    assert sorted((i.code, i.severity) for i in issues) == [
        ("broken-link", "warning"),
        ("unlinked-reference", "warning"),
    ]
    assert not has_errors(issues)


def test_missing_skill_md_in_memory() -> None:
    issues = validate_skill(Skill.from_files("x", {"references/a.md": "# A\n"}))
    assert [i.code for i in issues] == ["missing-skill-md"]
    with pytest.raises(SkillError, match="no SKILL.md"):
        _ = Skill.from_files("x", {}).sections


@pytest.mark.parametrize("path", ["../x.md", "/abs.md", "a//b.md", "./SKILL.md", "a\\b", ""])
def test_from_files_rejects_unclean_paths(path: str) -> None:
    with pytest.raises(SkillError, match="invalid file path"):
        Skill.from_files("x", {path: "x"})


def test_a_skill_md_linked_from_outside_is_named(tmp_path: Path) -> None:
    """It read 'has no SKILL.md' (and `validate --json` printed no JSON) while the file was
    there, as a link out of the folder."""
    outside = tmp_path / "real.md"
    outside.write_text(GOOD_FM.format(name="linky"), encoding="utf-8")
    folder = tmp_path / "linky"
    folder.mkdir()
    (folder / "SKILL.md").symlink_to(outside)
    (issue,) = validate_dir(folder)
    assert issue.code == "external-link" and "is a link to" in issue.message
    with pytest.raises(SkillError, match="outside the skill folder"):
        load_skill(folder)
