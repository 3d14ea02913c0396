"""`skill validate` names markdown damage that changes which headings are sections."""

from click.testing import CliRunner

from toolkit.cli import main
from toolkit.skill import markdown_damage, parse_markdown

FRONT = "---\nname: demo\ndescription: A demo skill.\n---\n"


def codes(text: str) -> list[tuple[str, int | None]]:
    return [(issue.code, issue.line) for issue in markdown_damage("SKILL.md", text)]


def test_clean_markdown_has_no_damage():
    text = FRONT + "# Demo\n\n```python\nimport pandas as pd\n```\n\n## Next\ntext\n"
    assert codes(text) == []


def test_unclosed_fence_is_reported_at_its_opening_line():
    text = FRONT + "# Demo\n\n```python\nx = 1\n\n## Lost heading\n"
    assert codes(text) == [("unclosed-fence", 7)]
    # The damage is real: the heading after the fence is not a section.
    assert "Lost heading" not in [s.heading for s in parse_markdown(text).headed_sections]


def test_fence_glued_to_a_heading():
    text = FRONT + "# Demo\n```## Step 2\nbody\n```\n"
    assert codes(text) == [("fence-glued-heading", 6)]


def test_fence_glued_to_text_does_not_close_the_block():
    text = FRONT + "# Demo\n```\ncode here```\n## Step\n```\n"
    found = codes(text)
    assert ("fence-glued-text", 7) in found
    assert all(code != "unclosed-fence" for code, _ in found)


def test_heading_without_space_outside_code_only():
    text = FRONT + "# Demo\n##Step two\n```bash\n#!/bin/sh\n##not-a-heading\n```\n"
    assert codes(text) == [("heading-no-space", 6)]


def test_validate_cli_prints_file_and_line(tmp_path):
    skill = tmp_path / "demo"
    skill.mkdir()
    (skill / "SKILL.md").write_text(FRONT + "# Demo\n\n```python\nx = 1\n")
    result = CliRunner().invoke(main, ["skill", "validate", str(skill)])
    assert result.exit_code == 0, result.output  # damage is a warning, not an error
    assert "SKILL.md:7: [unclosed-fence]" in result.output
    assert "1 warnings" in result.output
