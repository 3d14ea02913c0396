"""Checks of the code a lesson teaches: its python blocks must parse, and must not redefine
the helpers the code protocol gives the agent.

A skill's code is copied, not read: the agent pastes a worked example into its sandbox. The
real WikiTQ run's 1.5B analyst appended code cut off mid-call (``print(sel[['Year',
'Goals']].to_str(``) and a ``def submit(self, answer): print(...)`` "fix" that, copied by the
agent, would turn its answer into a print. :func:`broken_blocks` finds fenced python blocks
that do not parse; :func:`shadowed_helpers` finds code that defines or assigns
``submit`` / ``read_skill`` (in a block, or as a bare ``def submit(`` / ``submit =`` line:
the real run's was bare). Only fenced blocks are parsed: an edit's bare text may be a
fragment of a block the skill already holds (a ``replace_in_section`` inside a fence), and
prose mentioning ``submit(...)`` is no definition.
"""

from __future__ import annotations

import ast
import re
import textwrap
import warnings

#: Names the code protocol defines in the agent's sandbox (see toolkit.code_protocol).
HARNESS_HELPERS = ("submit", "read_skill")

# A fence opens with ``` or ~~~ (an info string may follow) and closes with the same run.
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_PYTHON_INFO = ("python", "py", "python3", "")
# A definition or assignment of a helper on a line of its own, fenced or not.
_BARE_DEFINITION = re.compile(
    r"^[ \t]*(?:(?:async[ \t]+)?def[ \t]+(?P<defined>\w+)[ \t]*\(|(?P<assigned>\w+)[ \t]*=(?!=))",
    re.MULTILINE,
)


def python_blocks(content: str) -> list[str]:
    """The bodies of ``content``'s fenced blocks tagged python (or untagged), dedented."""
    blocks = []
    for match in _FENCE.finditer(content):
        info = match.group("info").strip().split(maxsplit=1)
        if (info[0].lower() if info else "") in _PYTHON_INFO:
            blocks.append(textwrap.dedent(match.group("body")))
    return blocks


# Invalid escapes in a lesson's regex ('\d' in a plain string) are not our output: the
# compiler's warning about them (a DeprecationWarning on 3.11, a SyntaxWarning from 3.12,
# both attributed to the parsed text, "<unknown>") is ignored for good. Not with
# catch_warnings around each parse: analyses run in threads, and two overlapping
# catch_warnings blocks restore each other's filters, which left "ignore everything" in
# place for the rest of the process (notices of a whole evolve went unsaid).
for _category in (DeprecationWarning, SyntaxWarning):
    warnings.filterwarnings("ignore", category=_category, module="<unknown>")


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _looks_like_code(block: str) -> bool:
    # An untagged fence may hold output or a table the lesson shows; only code is parsed.
    return any(ch in block for ch in "=()[]") and not block.lstrip().startswith(("|", ">>>"))


def broken_blocks(content: str) -> list[str]:
    """The first line of each python block of ``content`` that does not parse."""
    broken = []
    for block in python_blocks(content):
        if block.strip() and _looks_like_code(block) and _parse(block) is None:
            broken.append(next(line for line in block.splitlines() if line.strip()).strip())
    return broken


def shadowed_helpers(content: str) -> list[str]:
    """The harness helpers (:data:`HARNESS_HELPERS`) that ``content``'s python blocks define,
    assign or import over."""
    found: set[str] = set()
    for block in python_blocks(content):
        tree = _parse(block)
        if tree is None:
            continue
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names = [node.id]
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [(a.asname or a.name).split(".")[0] for a in node.names]
            found.update(n for n in names if n in HARNESS_HELPERS)
    for match in _BARE_DEFINITION.finditer(content):
        name = match.group("defined") or match.group("assigned")
        if name in HARNESS_HELPERS:
            found.add(name)
    return sorted(found)


# Statements that only code makes; a markdown line that parses as one is code, not prose (an
# expression such as "- total" or "df.columns" could be either).
_CODE_STATEMENTS = (
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Import,
    ast.ImportFrom,
    ast.Return,
    ast.Delete,
)
#: Ops whose content lands after a section's last line, outside any fence of the skill.
APPENDING_OPS = ("append_to_section", "add_section")


def unfenced_code_lines(content: str) -> list[str]:
    """The lines of ``content`` outside its fences that are python statements only code
    makes (assignments, imports, calls): appended as they are, they read as prose."""
    found = []
    fenced = False
    for line in content.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced or not stripped or stripped.startswith("#"):
            continue
        tree = _parse(stripped)
        if tree is None or len(tree.body) != 1:
            continue
        node = tree.body[0]
        if isinstance(node, _CODE_STATEMENTS) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
        ):
            found.append(stripped)
    return found


def code_problem(content: str, op: str) -> tuple[str, str] | None:
    """``(reason, message)`` when the code ``content`` teaches would hurt an agent that copies
    it: a python block that does not parse, a redefined harness helper, or (for an edit that
    appends) two or more lines of code outside a fence; None when there is none."""
    broken = broken_blocks(content)
    if broken:
        return "broken-code", f"its python block starting {broken[0]!r} does not parse"
    shadowed = shadowed_helpers(content)
    if shadowed:
        return (
            "shadows-harness",
            f"its code redefines {', '.join(shadowed)}, the harness's own helper: an agent "
            "copying it would lose its answer",
        )
    bare = unfenced_code_lines(content) if op in APPENDING_OPS else []
    if len(bare) >= 2:
        return (
            "unfenced-code",
            f"{len(bare)} lines of code outside a fence (first {bare[0]!r}) would read as "
            "prose in the skill: fence them as a python block",
        )
    return None
