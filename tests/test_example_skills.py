"""The example skills in skills/: valid, within budgets, fully linked, and their code runs.

The S0 skills are read by a small model, so besides the Agent Skills spec they must keep to
the size budgets, link every reference, and hold code that actually works: the worked
examples and the reference recipes are executed here against small synthetic inputs.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
import skills_ref

ROOT = Path(__file__).resolve().parent.parent
SKILLS_DIR = ROOT / "skills"
SKILL_DIRS = sorted(p for p in SKILLS_DIR.iterdir() if p.is_dir())
BUNDLED = {"gsm8k-math", "spreadsheet-manipulation", "wikitq-table-qa"}
# Level-2 sections every example skill has (a small model looks for them by name).
REQUIRED_SECTIONS = {"When to use", "Workflow", "Answer format rules", "Pitfalls", "Worked example"}
SKILL_MD_MAX_LINES = 500
REFERENCE_MAX_LINES = 300
# Target for the part a small model always reads: about 2,500 tokens at 4 chars per token.
SKILL_MD_MAX_CHARS = 10_000

_MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_PY_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _skill_md(skill_dir: Path) -> str:
    return (skill_dir / "SKILL.md").read_text(encoding="utf-8")


def _python_blocks(path: Path) -> list[str]:
    return _PY_BLOCK.findall(path.read_text(encoding="utf-8"))


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a snippet the way the agent's python tool does: a fresh interpreter in the task dir."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_bundled_skills_present() -> None:
    assert {p.name for p in SKILL_DIRS} >= BUNDLED


@pytest.mark.parametrize("skill_dir", SKILL_DIRS, ids=lambda p: p.name)
def test_spec_valid(skill_dir: Path) -> None:
    assert skills_ref.validate(skill_dir) == []


@pytest.mark.parametrize("skill_dir", SKILL_DIRS, ids=lambda p: p.name)
def test_size_budgets(skill_dir: Path) -> None:
    text = _skill_md(skill_dir)
    assert len(text.splitlines()) <= SKILL_MD_MAX_LINES
    assert len(text) <= SKILL_MD_MAX_CHARS
    for ref in sorted((skill_dir / "references").glob("**/*.md")):
        lines = len(ref.read_text(encoding="utf-8").splitlines())
        assert lines <= REFERENCE_MAX_LINES, f"{ref.name}: {lines} lines"


@pytest.mark.parametrize("skill_dir", SKILL_DIRS, ids=lambda p: p.name)
def test_links_resolve_and_cover_references(skill_dir: Path) -> None:
    targets = [t for t in _MD_LINK.findall(_skill_md(skill_dir)) if "://" not in t]
    assert targets, "SKILL.md links no file"
    for target in targets:
        assert (skill_dir / target.split("#")[0]).is_file(), f"broken link {target}"
    linked = {t.split("#")[0].removeprefix("./") for t in targets}
    files = {p.relative_to(skill_dir).as_posix() for p in (skill_dir / "references").rglob("*")}
    assert {f for f in files if (skill_dir / f).is_file()} <= linked


@pytest.mark.parametrize("skill_dir", SKILL_DIRS, ids=lambda p: p.name)
def test_code_fences_balanced(skill_dir: Path) -> None:
    for path in [skill_dir / "SKILL.md", *sorted((skill_dir / "references").glob("*.md"))]:
        fences = [
            ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("```")
        ]
        assert len(fences) % 2 == 0, f"unclosed code fence in {path.name}"


@pytest.mark.parametrize("skill_dir", SKILL_DIRS, ids=lambda p: p.name)
def test_toolkit_validator_and_sections(skill_dir: Path) -> None:
    skill_mod = pytest.importorskip("toolkit.skill")
    skill = skill_mod.load_skill(skill_dir)
    issues = skill_mod.validate_skill(skill)
    assert issues == [], [i.message for i in issues]
    sections = skill.sections
    ids = [s.id for s in sections]
    assert len(ids) == len(set(ids)), "duplicate section ids"
    headings = [s.heading for s in sections if s.level > 0]
    assert len(headings) == len(set(headings)), "duplicate heading texts"
    assert [s.level for s in sections if s.level > 0].count(1) == 1, "exactly one title"
    level2 = {s.heading for s in sections if s.level == 2}
    assert level2 >= REQUIRED_SECTIONS
    # Sections tile the body: each starts after the previous one ends.
    for before, after in zip(sections, sections[1:], strict=False):
        assert after.start_line == before.end_line + 1


# -- the code in the skills runs ---------------------------------------------------------


def test_gsm8k_code_runs(tmp_path: Path) -> None:
    skill_dir = SKILLS_DIR / "gsm8k-math"
    worked = _python_blocks(skill_dir / "SKILL.md")
    assert len(worked) == 1
    out = _ok(_run(worked[0], tmp_path))
    assert "profit 106.0" in out
    for block in _python_blocks(skill_dir / "references" / "problem-patterns.md"):
        _ok(_run(block, tmp_path))


WTQ_TABLE = [
    [
        "Player",
        "Goals",
        "Nation",
        "Gold",
        "Total",
        "Result",
        "Venue",
        "Year",
        "Fate",
        "Town",
        "Date",
        "Time",
        "Score",
        "Connections",
        "Rank",
        "Name",
        "Height\nft / m",
        "Winner",
    ],
    [
        "Ann Johnson",
        "12[1]",
        "Italy (ITA)",
        "2",
        "3",
        "W",
        "Rio, Brazil",
        "1995",
        "Fell",
        "Akrar",
        "June 22, 1984",
        "3:11.37",
        "2–1",
        "Line A\nLine B",
        "1",
        "AEP Building",
        "629 / 192",
        "Bob",
    ],
    [
        'Bo "Big" Stewart',
        "1,015",
        "Brazil (BRA)",
        "1",
        "3",
        "L",
        "Paris, France",
        "2001",
        "Fell",
        "Argir",
        "4 May 1935",
        "1:02:03",
        "0-3",
        "Line C",
        "=2",
        "One Columbus Center",
        "555 / 169",
        "Bob",
    ],
    [
        "Cy Smith",
        "—",
        "Argentina (ARG)",
        "0",
        "1",
        "w",
        "Lima, Peru",
        "2012",
        "Finished",
        "Anir",
        "26 March",
        "2:59.1",
        "1 - 1",
        "",
        "",
        "Tower X",
        "530 / 162",
        "Cy",
    ],
    ["Total", "1027", "", "3", "7"] + [""] * 13,
]


def _write_wtq_table(tmp_path: Path) -> None:
    with (tmp_path / "table.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(WTQ_TABLE)


def test_wikitq_worked_example_counts_rows(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    _write_wtq_table(tmp_path)
    blocks = _python_blocks(SKILLS_DIR / "wikitq-table-qa" / "SKILL.md")
    loading, worked = blocks[0], blocks[-1]
    out = _ok(_run(loading, tmp_path))
    assert "(4, 18)" in out and "Height ft / m" in out
    out = _ok(_run(worked, tmp_path))
    # Goals > 10: Ann (12[1]) and Bo (1,015); the Total row and the dash are left out.
    assert out.strip().splitlines()[-1] == "2"


def test_wikitq_cookbook_runs(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    _write_wtq_table(tmp_path)
    code = "\n".join(
        _python_blocks(SKILLS_DIR / "wikitq-table-qa" / "references" / "pandas-cookbook.md")
    )
    out = _ok(_run(code, tmp_path))
    assert "1984-06-22" in out and "1935-05-04" in out  # mixed date formats both parsed


def _write_workbook(path: Path, shift: int) -> None:
    """A workbook shaped like the skill's examples; ``shift`` varies the data per test case."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    for c, h in zip("ABCDHI", ["Dept", "Qty", "Amt", "Code", "Key", "Val"], strict=True):
        ws[f"{c}1"] = h
    codes = ["x1", "X2", " x3", "zz", None, "x1", "x2", "x3", "x9"]
    for i, code in enumerate(codes, start=2):
        ws[f"A{i}"] = "PI" if i % 2 else "QA"
        ws[f"B{i}"] = i + shift
        ws[f"C{i}"] = 2 * i
        ws[f"D{i}"] = code
    for r, (k, v) in enumerate([("X1", "one"), ("x2", "two"), ("x3 ", "three")], start=2):
        ws[f"H{r}"] = k
        ws[f"I{r}"] = f"{v}{shift}"
    ws["S2"] = "#N/A"
    ws["E12"] = "=1+1"
    wb.create_sheet("Sheet two")["E2"] = 1
    data = wb.create_sheet("Data")
    for r in range(2, 10):
        data.cell(r, 4).value = r * 10
    wb.create_sheet("Summary")
    wb.save(path)


def test_spreadsheet_worked_example_writes_every_case(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    for n in (1, 2):
        _write_workbook(tmp_path / f"{n}_input.xlsx", shift=n)
    blocks = _python_blocks(SKILLS_DIR / "spreadsheet-manipulation" / "SKILL.md")
    inspect, worked = blocks[0], blocks[-1]
    assert "== sheet 'Sheet two'" in _ok(_run(inspect, tmp_path))
    _ok(_run(worked, tmp_path))
    for n in (1, 2):
        ws = openpyxl.load_workbook(tmp_path / f"{n}_output.xlsx", data_only=True).worksheets[0]
        # openpyxl stores '' as an empty cell; the checker treats None and '' as equal.
        got = [ws[f"E{r}"].value or "" for r in range(2, 11)]
        assert got == [
            f"one{n}",
            f"two{n}",
            f"three{n}",
            "",
            "",
            f"one{n}",
            f"two{n}",
            f"three{n}",
            "",
        ]


def test_spreadsheet_references_run(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    pytest.importorskip("pandas")
    refs = SKILLS_DIR / "spreadsheet-manipulation" / "references"
    for n in (1, 2):
        _write_workbook(tmp_path / f"{n}_input.xlsx", shift=n)
    (tmp_path / "1_output.xlsx").write_bytes((tmp_path / "1_input.xlsx").read_bytes())
    preamble = (
        "import shutil\n"
        "from openpyxl import load_workbook\n"
        "wb = load_workbook('1_input.xlsx', data_only=True)\n"
        "ws = wb['Sheet1']\n"
        "def solve(src, dst):\n"
        "    shutil.copy(src, dst)\n"
    )
    out = _ok(_run(preamble + "\n".join(_python_blocks(refs / "openpyxl-recipes.md")), tmp_path))
    assert "[('Sheet two', 'E2:E9')]" in out
    assert "2024-01-31" in out
    assert "['1_output.xlsx', '2_output.xlsx']" in out
    out = _ok(_run(preamble + "\n".join(_python_blocks(refs / "excel-functions.md")), tmp_path))
    assert "3.0 2.68 2" in out  # excel_round rounds halves away from zero, round() does not
    assert "mid top" in out
