"""The skill model: an Agent Skills folder parsed into frontmatter, sections and files.

A skill is a folder holding ``SKILL.md`` (YAML frontmatter + markdown) and optional
``references/``, ``scripts/`` and ``assets/``. This module loads such a folder (or an
in-memory file map) into a :class:`Skill`, splits markdown into a flat list of
:class:`Section` records (a tree through ``parent`` ids) and validates the result against the
Agent Skills spec (by reusing ``skills-ref``) plus the toolkit's own checks.

Markdown rules, kept deliberately small and exact:

* Lines end with ``\\n`` or ``\\r\\n``; both are preserved byte for byte, as is a missing
  final newline, so ``render(parse_markdown(text)) == text`` for every text.
* Only ATX headings (``#`` .. ``######``, at most 3 spaces of indentation, then a space, a
  tab or the end of the line) start sections. Setext headings (text underlined with ``===``
  or ``---``) are NOT sections: they stay part of the enclosing section's text.
* Lines inside fenced code blocks (````` ``` ````` or ``~~~``, at least 3, closed by a fence of
  the same character at least as long, with nothing but spaces after it) are never headings;
  an unclosed fence runs to the end of the file, as in CommonMark. HTML blocks and comments
  are not special.
* Frontmatter is only recognised in ``SKILL.md``: a first line ``---`` and the next line
  that is ``---`` (trailing spaces allowed).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from skills_ref.errors import ParseError as SpecParseError
from skills_ref.parser import parse_frontmatter as spec_parse_frontmatter
from skills_ref.validator import validate_metadata as spec_validate_metadata

from toolkit.errors import SectionLookupError, SkillError

SKILL_MD = "SKILL.md"
PREAMBLE_ID = "_preamble"
"""Id of the text between the frontmatter and the first heading (never a heading slug)."""

# Folders never part of a skill's content (caches, VCS metadata).
_SKIPPED_DIRS = frozenset({".git", "__pycache__", ".pytest_cache", ".ruff_cache"})
# Extensions read as text (decoded UTF-8); anything else, or text that fails to decode, stays
# bytes. SKILL.md and references/*.md must decode: they are what patches edit.
TEXT_SUFFIXES = frozenset(
    {
        ".md", ".markdown", ".txt", ".rst", ".py", ".sh", ".bash", ".js", ".ts", ".json",
        ".jsonl", ".yaml", ".yml", ".toml", ".csv", ".tsv", ".html", ".css", ".xml", ".cfg",
        ".ini", ".sql", ".r", ".rb", ".go", ".rs", ".java", ".c", ".h", ".cpp",
    }
)  # fmt: skip

_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_CLOSING_HASHES_RE = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
_FENCE_OPEN_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_FENCE_CLOSE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")

FenceState = tuple[str, int] | None
"""Fence parser state: ``None`` outside code, else (fence character, fence length)."""


# ---------------------------------------------------------------------------------------------
# Lines and fences
# ---------------------------------------------------------------------------------------------


def split_lines(text: str) -> list[str]:
    """Split ``text`` into lines that keep their ``\\n`` / ``\\r\\n`` endings.

    Unlike :meth:`str.splitlines` only ``\\n`` ends a line (``\\r`` stays with it), so joining
    the result gives back ``text`` exactly and form feeds or U+2028 never split a line.
    """
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def strip_eol(line: str) -> str:
    """Return ``line`` without its line ending."""
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith("\n"):
        return line[:-1]
    return line


def detect_newline(text: str) -> str:
    """Return ``"\\r\\n"`` if the text's first line ending is CRLF, else ``"\\n"``."""
    index = text.find("\n")
    return "\r\n" if index > 0 and text[index - 1] == "\r" else "\n"


def fence_step(state: FenceState, line: str) -> FenceState:
    """Advance the fenced-code parser by one line (CommonMark fence rules)."""
    # Fast path: a fence line starts (after <= 3 spaces) with the fence character.
    head = line.lstrip(" ")[:1]
    if (state is None and head not in ("`", "~")) or (state is not None and head != state[0]):
        return state
    bare = strip_eol(line)
    if state is None:
        match = _FENCE_OPEN_RE.match(bare)
        if match is None:
            return None
        fence, info = match.group(1), match.group(2)
        if fence[0] == "`" and "`" in info:
            return None  # a backtick fence's info string may not hold backticks
        return (fence[0], len(fence))
    match = _FENCE_CLOSE_RE.match(bare)
    if match and match.group(1)[0] == state[0] and len(match.group(1)) >= state[1]:
        return None
    return state


def fence_state_after(lines: Iterable[str], state: FenceState = None) -> FenceState:
    """Run the fence parser over ``lines`` from ``state`` and return the final state."""
    for line in lines:
        state = fence_step(state, line)
    return state


def parse_heading(line: str) -> tuple[int, str] | None:
    """Return (level, text) if ``line`` is an ATX heading, else ``None``."""
    if not line.lstrip(" ").startswith("#"):
        return None  # fast path for the common case
    match = _HEADING_RE.match(strip_eol(line))
    if match is None:
        return None
    text = match.group(2) or ""
    text = _CLOSING_HASHES_RE.sub("", text).strip()
    return len(match.group(1)), text


def slugify(text: str) -> str:
    """Make a stable id component from heading text (lowercase words joined by ``-``)."""
    norm = unicodedata.normalize("NFKC", text).casefold()
    slug = re.sub(r"[\W_]+", "-", norm).strip("-")
    return slug or "section"


# ---------------------------------------------------------------------------------------------
# Markdown documents
# ---------------------------------------------------------------------------------------------


class Section(BaseModel):
    """One section of a markdown file: a heading and its own text up to the next heading."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Stable id: slugs of the heading path joined by ``/`` (``workflow/inspect-the-data``);
    repeated paths get ``-2``, ``-3``; the preamble is ``_preamble``."""
    heading: str
    """The heading text without ``#`` marks (empty for the preamble)."""
    path: list[str]
    """Heading texts from the top of the document down to this section."""
    level: int
    """1..6 for ``#``..``######``; 0 for the preamble."""
    start_line: int
    """1-based line number, in the file, of the heading line (first preamble line)."""
    end_line: int
    """1-based inclusive number of the last line before the next heading of any level."""
    subtree_end_line: int
    """1-based inclusive last line of this section together with all its subsections."""
    text: str
    """Raw text of lines ``start_line..end_line`` with their line endings."""
    parent: str | None = None
    """Id of the enclosing section (nearest previous heading of a lower level)."""

    @property
    def body(self) -> str:
        """The section's own text without its heading line."""
        if self.level == 0:
            return self.text
        return "".join(split_lines(self.text)[1:])


class ParsedDoc(BaseModel):
    """A markdown file split into raw frontmatter, preamble and sections (lossless)."""

    model_config = ConfigDict(frozen=True)

    frontmatter_raw: str | None = None
    """The frontmatter block exactly as written, ``---`` lines included; None if absent."""
    frontmatter_error: str | None = None
    """Why a frontmatter block that was started could not be read (e.g. never closed)."""
    preamble: str = ""
    """Raw text between the frontmatter and the first heading (may be blank)."""
    body_start_line: int = 1
    """1-based line number of the first line after the frontmatter."""
    sections: list[Section] = Field(default_factory=list)
    """Sections in file order; the preamble is included only when it is not blank."""
    line_count: int = 0
    """Number of lines in the file."""
    newline: Literal["\n", "\r\n"] = "\n"
    """The file's line ending (from its first line), used for inserted text."""

    @property
    def headed_sections(self) -> list[Section]:
        """Sections that start with a heading (everything but the preamble)."""
        return [s for s in self.sections if s.level > 0]

    def render(self) -> str:
        """Rebuild the file text; equal to the parsed text byte for byte."""
        return render(self)

    def section(self, query: str) -> Section:
        """Find one section by id or heading; see :func:`find_section`."""
        return find_section(self.sections, query)


def render(doc: ParsedDoc) -> str:
    """Rebuild a file from its parsed parts: frontmatter + preamble + each section's text."""
    return (doc.frontmatter_raw or "") + doc.preamble + "".join(s.text for s in doc.headed_sections)


def parse_markdown(text: str, *, frontmatter: bool = True) -> ParsedDoc:
    """Parse markdown text into a lossless :class:`ParsedDoc`.

    Args:
        text: The whole file's text.
        frontmatter: Recognise a leading ``---`` YAML block (true for SKILL.md only).

    Returns:
        The parsed document; ``render(result) == text`` always holds.
    """
    lines = split_lines(text)
    body_start = 0
    fm_raw: str | None = None
    fm_error: str | None = None
    if frontmatter and lines and strip_eol(lines[0]).rstrip() == "---":
        for index in range(1, len(lines)):
            if strip_eol(lines[index]).rstrip() == "---":
                body_start = index + 1
                fm_raw = "".join(lines[:body_start])
                break
        else:
            fm_error = "frontmatter starts with '---' but has no closing '---' line"

    headings: list[tuple[int, int, str]] = []  # (0-based line index, level, text)
    state: FenceState = None
    for index in range(body_start, len(lines)):
        line = lines[index]
        if state is None:
            heading = parse_heading(line)
            if heading is not None:
                headings.append((index, heading[0], heading[1]))
                continue
        state = fence_step(state, line)

    first_heading = headings[0][0] if headings else len(lines)
    preamble = "".join(lines[body_start:first_heading])
    sections: list[Section] = []
    if preamble.strip():
        sections.append(
            Section(
                id=PREAMBLE_ID,
                heading="",
                path=[],
                level=0,
                start_line=body_start + 1,
                end_line=first_heading,
                subtree_end_line=first_heading,
                text=preamble,
            )
        )

    used_ids: set[str] = set()
    # Stack of (level, id, path) of the open ancestors.
    stack: list[tuple[int, str, list[str]]] = []
    built: list[dict[str, Any]] = []
    for number, (index, level, heading_text) in enumerate(headings):
        end = headings[number + 1][0] if number + 1 < len(headings) else len(lines)
        while stack and stack[-1][0] >= level:
            stack.pop()
        parent_id = stack[-1][1] if stack else None
        parent_path = stack[-1][2] if stack else []
        base = slugify(heading_text)
        prefix = f"{parent_id}/" if parent_id else ""
        section_id = prefix + base
        counter = 2
        while section_id in used_ids:
            section_id = f"{prefix}{base}-{counter}"
            counter += 1
        used_ids.add(section_id)
        path = [*parent_path, heading_text]
        stack.append((level, section_id, path))
        built.append(
            {
                "id": section_id,
                "heading": heading_text,
                "path": path,
                "level": level,
                "start_line": index + 1,
                "end_line": end,
                "text": "".join(lines[index:end]),
                "parent": parent_id,
            }
        )
    # A subtree ends just before the next heading of the same or a higher level.
    for number, item in enumerate(built):
        subtree_end = len(lines)
        for later in built[number + 1 :]:
            if later["level"] <= item["level"]:
                subtree_end = later["start_line"] - 1
                break
        sections.append(Section(subtree_end_line=subtree_end, **item))

    return ParsedDoc(
        frontmatter_raw=fm_raw,
        frontmatter_error=fm_error,
        preamble=preamble,
        body_start_line=body_start + 1,
        sections=sections,
        line_count=len(lines),
        newline=detect_newline(text),  # type: ignore[arg-type]
    )


def find_section(sections: list[Section], query: str) -> Section:
    """Find exactly one section matching ``query``.

    Matching rules, tried in order; the first rule that matches anything decides, and more
    than one match under that rule is an ambiguity (:class:`SectionLookupError` with reason
    ``section-ambiguous``), never a guess:

    1. the section id (``workflow/inspect-the-data``), or the heading path joined by
       `` > `` (``Workflow > Inspect the data``);
    2. the heading text exactly (``Inspect the data``); a query starting with ``#`` marks
       (``## Workflow``) also requires that heading level;
    3. the heading text ignoring case and runs of whitespace;
    4. the id's last component(s) (``inspect-the-data`` matches ``workflow/inspect-the-data``).

    Raises:
        SectionLookupError: ``reason`` is ``section-missing`` or ``section-ambiguous``.
    """
    query = query.strip()
    if not query:
        raise SectionLookupError("section-missing", "empty section name")
    by_id = [s for s in sections if s.id == query]
    if by_id:
        return by_id[0]
    if " > " in query:
        wanted = [part.strip() for part in query.split(" > ")]
        by_path = [s for s in sections if s.level > 0 and s.path == wanted]
        if len(by_path) == 1:
            return by_path[0]
        if len(by_path) > 1:
            raise SectionLookupError(
                "section-ambiguous", f"section {query!r} is ambiguous: {len(by_path)} sections"
            )
    level: int | None = None
    text = query
    marks = re.match(r"^(#{1,6})\s+(.*)$", query)
    if marks:
        level, text = len(marks.group(1)), marks.group(2).strip()
        text = _CLOSING_HASHES_RE.sub("", text).strip()

    def norm(value: str) -> str:
        return " ".join(value.casefold().split())

    rules = [
        lambda s: s.heading == text,
        lambda s: norm(s.heading) == norm(text),
        lambda s: level is None and s.id.endswith("/" + query),
    ]
    for rule in rules:
        found = [s for s in sections if s.level > 0 and rule(s) and level in (None, s.level)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            where = ", ".join(f"{s.id} (line {s.start_line})" for s in found)
            raise SectionLookupError(
                "section-ambiguous", f"section {query!r} is ambiguous: it matches {where}"
            )
    raise SectionLookupError("section-missing", f"no section matches {query!r}")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


#: A skill file above this size is reported (a warning): skills are copied and committed often.
LARGE_FILE_BYTES = 1_000_000


def _link_target(skill: Skill, path: str) -> str:
    if skill.root is None:
        return ""
    try:
        return f" (to {os.readlink(Path(skill.root) / path)})"
    except OSError:
        return ""


class Budgets(BaseModel):
    """Size budgets a skill must fit (the agent reads these files into its context)."""

    skill_md_lines: int = Field(default=500, ge=1)
    """Maximum number of lines of SKILL.md."""
    reference_lines: int = Field(default=300, ge=1)
    """Maximum number of lines of each ``references/**/*.md`` file."""


class Issue(BaseModel):
    """One validation finding."""

    model_config = ConfigDict(frozen=True)

    code: str
    """Stable machine-readable code, e.g. ``name-mismatch``, ``too-long``."""
    file: str
    """Relative path of the file concerned (``SKILL.md`` for frontmatter problems)."""
    message: str
    """Human-readable explanation."""
    severity: Literal["error", "warning"] = "error"
    """Errors make a skill invalid; warnings do not."""
    spec: bool = False
    """True when the message comes verbatim from the Agent Skills reference validator."""
    edit: int | None = None
    """Index of the patch edit that caused it (patch result checks only)."""
    line: int | None = None
    """1-based line number in ``file`` where the problem is, when it has one."""


def _spec_code(message: str) -> str:
    """Map a skills-ref message to a stable code."""
    checks = [  # first match wins: the order matters
        ("directory name", "name-mismatch"),
        ("unexpected fields", "unknown-field"),
        ("missing required field", "missing-field"),
        ("missing required file", "missing-skill-md"),
        ("description", "invalid-description"),
        ("compatibility", "invalid-compatibility"),
        ("name", "invalid-name"),
    ]
    lowered = message.lower()
    for needle, code in checks:
        if needle in lowered:
            return code
    return "invalid-frontmatter"


def is_reference(path: str) -> bool:
    """True for markdown files under ``references/`` (editable by patches, budgeted)."""
    return path.startswith("references/") and path.endswith(".md")


def is_editable(path: str) -> bool:
    """True for the files patches may edit without ``allow_protected``."""
    return path == SKILL_MD or is_reference(path)


# ---------------------------------------------------------------------------------------------
# Skills
# ---------------------------------------------------------------------------------------------


class Skill(BaseModel):
    """A skill folder held in memory: its folder name and every file in it.

    Build one with :func:`load_skill` (from disk) or :meth:`Skill.from_files` (in memory);
    parsing of SKILL.md happens lazily and is cached.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    """The folder name (the spec requires it to equal the frontmatter ``name``)."""
    files: dict[str, str | bytes]
    """Relative POSIX path -> text (UTF-8 text files) or bytes (everything else)."""
    root: Path | None = None
    """The folder on disk, when loaded from disk."""
    external_links: frozenset[str] = frozenset()
    """Relative paths that are symlinks resolving outside the folder (never read)."""
    executables: frozenset[str] = frozenset()
    """Files with the executable bit, for a skill read from git (on disk: read from root)."""

    @classmethod
    def from_files(
        cls,
        name: str,
        files: Mapping[str, str | bytes],
        *,
        root: Path | None = None,
        executables: Iterable[str] = (),
    ) -> Skill:
        """Build a skill from an in-memory file map (no disk access).

        Raises:
            SkillError: a path is not a clean relative POSIX path, or SKILL.md or a
            references/*.md file is bytes that are not UTF-8.
        """
        decoded: dict[str, str | bytes] = {}
        for path, content in files.items():
            parts = path.split("/")
            if not path or path.startswith("/") or "\\" in path or {"", ".", ".."} & set(parts):
                raise SkillError(f"invalid file path {path!r} in skill {name!r}")
            decoded[path] = file_content(path, content) if isinstance(content, bytes) else content
        return cls(
            name=name,
            files=dict(sorted(decoded.items())),
            root=root,
            executables=frozenset(executables),
        )

    @property
    def has_skill_md(self) -> bool:
        """Whether the folder holds SKILL.md."""
        return SKILL_MD in self.files

    @cached_property
    def doc(self) -> ParsedDoc:
        """SKILL.md parsed (raises SkillError if the skill has no SKILL.md)."""
        text = self.files.get(SKILL_MD)
        if not isinstance(text, str):
            raise SkillError(f"skill {self.name!r} has no SKILL.md")
        return parse_markdown(text, frontmatter=True)

    @property
    def sections(self) -> list[Section]:
        """The sections of SKILL.md."""
        return self.doc.sections

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """Frontmatter as the spec parser reads it (empty if unreadable)."""
        try:
            return _spec_metadata(self.files.get(SKILL_MD))
        except (SpecParseError, SkillError):
            return {}

    @property
    def description(self) -> str:
        """The frontmatter description ("" when missing)."""
        value = self.metadata.get("description")
        return value.strip() if isinstance(value, str) else ""

    def text(self, path: str) -> str:
        """The text of a file (raises SkillError if missing or binary)."""
        content = self.files.get(path)
        if content is None:
            raise SkillError(f"skill {self.name!r} has no file {path!r}")
        if isinstance(content, bytes):
            raise SkillError(f"{path} in skill {self.name!r} is not a text file")
        return content

    def parsed(self, path: str = SKILL_MD) -> ParsedDoc:
        """Parse any markdown file of the skill (frontmatter only for SKILL.md)."""
        if path == SKILL_MD:
            return self.doc
        return parse_markdown(self.text(path), frontmatter=False)

    def section(self, query: str, file: str = SKILL_MD) -> Section:
        """Look up a section by id or heading in ``file``; see :func:`find_section`."""
        return find_section(self.parsed(file).sections, query)

    def reference_files(self) -> list[str]:
        """The markdown reference files (``references/*.md``), sorted."""
        return sorted(p for p in self.files if p.startswith("references/") and p.endswith(".md"))

    def workspace_files(self) -> list[str]:
        """The files an agent runs or opens from its working folder (``scripts/``,
        ``assets/``), sorted; the markdown is read through the skill tools instead."""
        return sorted(p for p in self.files if p.startswith(("scripts/", "assets/")))

    def markdown_docs(self) -> list[tuple[str, ParsedDoc]]:
        """SKILL.md, then each markdown reference file, parsed (text files only)."""
        return [
            (name, self.parsed(name))
            for name in [SKILL_MD, *self.reference_files()]
            if isinstance(self.files.get(name), str)
        ]


class SkillEncodingError(SkillError):
    """SKILL.md or a references/*.md file is not UTF-8 (``path`` names it)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def _decode_editable(path: str, content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SkillEncodingError(
            path, f"{path} is not valid UTF-8 (byte {exc.start}); save it as UTF-8 text"
        ) from None


def file_content(path: str, data: bytes) -> str | bytes:
    """A skill file's content as the skill holds it: text for SKILL.md, references and other
    text files that are UTF-8, bytes for everything else.

    Raises:
        SkillEncodingError: SKILL.md or a references/*.md file is not UTF-8.
    """
    if is_editable(path):
        return _decode_editable(path, data)
    if PurePosixPath(path).suffix.lower() in TEXT_SUFFIXES:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data
    return data


def not_a_folder_message(path: object, folder: object = None) -> str:
    """Why ``path``, a file, is no skill: with the ``folder`` to pass instead when known
    (``skills/x/SKILL.md is a file, not a skill folder: pass the folder that holds SKILL.md,
    skills/x``). Every command that takes a skill folder says this (pure)."""
    text = f"{path} is a file, not a skill folder"
    if folder is None:
        return text + " (a skill is a folder holding SKILL.md)"
    return text + f": pass the folder that holds SKILL.md, {folder}"


def file_not_folder(path: str | os.PathLike[str]) -> str:
    """:func:`not_a_folder_message` for a file on disk, naming the skill folder it belongs
    to: its parent or grandparent that holds SKILL.md (``skills/x/SKILL.md``,
    ``skills/x/references/a.md``)."""
    given = Path(path)
    folder = next(
        (p for p in (given.parent, given.parent.parent) if (p / SKILL_MD).is_file()), None
    )
    return not_a_folder_message(path, folder)


def load_skill(path: str | os.PathLike[str]) -> Skill:
    """Load a skill folder from disk.

    Every regular file below the folder is read (``.git`` and cache folders skipped).
    Symlinks that resolve outside the folder are not followed; they are listed in
    :attr:`Skill.external_links` so patches can refuse to write through them.

    Raises:
        SkillError: the path is missing or not a folder, SKILL.md is missing, or SKILL.md /
            a references/*.md file is not UTF-8 (the message names the file).
    """
    root = Path(path)
    if not root.exists():
        raise SkillError(f"skill folder {root} does not exist")
    if not root.is_dir():
        raise SkillError(file_not_folder(root))
    real_root = root.resolve()
    files: dict[str, str | bytes] = {}
    external: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        current = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        for dirname in list(dirnames):
            full = current / dirname
            if full.is_symlink():
                rel = full.relative_to(root).as_posix()
                if not _inside(full.resolve(), real_root):
                    external.add(rel)
                    dirnames.remove(dirname)
        for filename in sorted(filenames):
            full = current / filename
            rel = full.relative_to(root).as_posix()
            if full.is_symlink() and not _inside(full.resolve(), real_root):
                external.add(rel)
                continue
            if not full.is_file():
                continue  # dangling links, sockets, fifos
            files[rel] = file_content(rel, full.read_bytes())
    if SKILL_MD not in files and SKILL_MD in external:
        raise SkillError(_outside_link_message(root / SKILL_MD))
    if SKILL_MD not in files:
        raise SkillError(f"{root} has no SKILL.md (a skill folder must contain SKILL.md)")
    return Skill(
        name=real_root.name if root.name in ("", ".", "..") else root.name,
        files=dict(sorted(files.items())),
        root=root,
        external_links=frozenset(external),
    )


def _outside_link_message(link: Path) -> str:
    return (
        f"{link} is a link to {link.resolve()}, outside the skill folder (links out of a "
        "skill are not followed): copy the file into the folder"
    )


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _spec_metadata(text: str | bytes | None) -> dict[str, Any]:
    """Parse frontmatter exactly as skills-ref does (it reads with universal newlines)."""
    if not isinstance(text, str):
        raise SkillError("SKILL.md missing or not text")
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        metadata, _ = spec_parse_frontmatter(normalized)
    except Exception as exc:  # strictyaml raises a few non-YAMLError exceptions
        raise SpecParseError(_one_line_yaml_error(str(exc))) from None
    return metadata


_YAML_PREFIX = "Invalid YAML in frontmatter: "


def _one_line_yaml_error(message: str) -> str:
    """strictyaml's multi-line report (context, carets, its own wording) as one line:
    ``Invalid YAML in frontmatter (SKILL.md line N): <problem>``; other messages unchanged."""
    if "\n" not in message:
        return message
    text = message.removeprefix(_YAML_PREFIX)
    problems = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line[0].isspace() and not line.startswith("While ")
    ]
    problem = problems[-1] if problems else text.splitlines()[0]
    if "JSONesque flow" in problem:
        problem = "flow style ([...] or {...}) is not allowed; put the value in quotes"
    lines = re.findall(r"line (\d+)", text)
    where = f" (SKILL.md line {lines[-1]})" if lines else ""
    return f"{_YAML_PREFIX.rstrip(': ')}{where}: {problem.rstrip('.')}"


_LINK_RE = re.compile(r"(?<![\w/.-])(?:\./)?(references/[^\s)\]>`'\"#?]+\.md)")


def linked_references(skill_md: str) -> set[str]:
    """Paths ``references/....md`` that SKILL.md mentions (as a link target or in text)."""
    return set(_LINK_RE.findall(skill_md))


def validate_skill(skill: Skill, budgets: Budgets | None = None) -> list[Issue]:
    """Validate a skill against the Agent Skills spec and the toolkit's own rules.

    Spec checks reuse ``skills_ref`` (its frontmatter parser and ``validate_metadata``), so
    the messages of issues with ``spec=True`` are those ``skills_ref.validate`` reports for
    the same folder (a YAML error's made one line). Toolkit checks add: a line-based
    frontmatter block that agrees with the spec parser, size budgets, and reference links
    (warnings).

    Returns:
        Issues in a stable order; the skill is valid when none has severity ``error``.
    """
    budgets = budgets or Budgets()
    issues: list[Issue] = []
    if SKILL_MD not in skill.files:
        return [
            Issue(
                code="missing-skill-md",
                file=SKILL_MD,
                message="Missing required file: SKILL.md",
                spec=True,
            )
        ]
    text = skill.files[SKILL_MD]
    if isinstance(text, bytes):
        return [Issue(code="encoding", file=SKILL_MD, message="SKILL.md is not UTF-8 text")]
    if text.startswith("\ufeff"):
        # An editor's byte-order mark: the file looks as if it starts with ---, yet the
        # spec parser sees no frontmatter.
        issues.append(
            Issue(
                code="byte-order-mark",
                file=SKILL_MD,
                line=1,
                message="SKILL.md starts with a UTF-8 byte-order mark, so its frontmatter is "
                "not at the start of the file: save it without the BOM",
            )
        )
    text = text.removeprefix("\ufeff")
    try:
        metadata = _spec_metadata(text)
    except SpecParseError as exc:
        issues.append(
            Issue(code="malformed-frontmatter", file=SKILL_MD, message=str(exc), spec=True)
        )
    else:
        for message in spec_validate_metadata(metadata, Path(skill.name)):
            issues.append(
                Issue(code=_spec_code(message), file=SKILL_MD, message=message, spec=True)
            )
        issues.extend(_frontmatter_agreement(text))

    doc = skill.doc
    if doc.line_count > budgets.skill_md_lines:
        issues.append(
            Issue(
                code="too-long",
                file=SKILL_MD,
                message=f"SKILL.md has {doc.line_count} lines; the budget is "
                f"{budgets.skill_md_lines} (move detail into references/)",
            )
        )
    for path, content in skill.files.items():
        if not is_reference(path):
            continue
        if isinstance(content, bytes):
            issues.append(Issue(code="encoding", file=path, message=f"{path} is not UTF-8 text"))
            continue
        count = len(split_lines(content))
        if count > budgets.reference_lines:
            issues.append(
                Issue(
                    code="too-long",
                    file=path,
                    message=f"{path} has {count} lines; the budget is {budgets.reference_lines}",
                )
            )
    name = skill.metadata.get("name")
    if isinstance(name, str) and not name.strip().isascii():
        issues.append(
            Issue(
                code="non-ascii-name",
                file=SKILL_MD,
                severity="warning",
                message=f"skill name {name!r} is not ASCII; git refs and URLs prefer a-z0-9-",
            )
        )
    for path, content in skill.files.items():
        if path == SKILL_MD or (is_reference(path) and isinstance(content, str)):
            issues.extend(markdown_damage(path, content))
    linked = linked_references(text)
    for path in sorted(linked):
        if path not in skill.files:
            issues.append(
                Issue(
                    code="broken-link",
                    file=SKILL_MD,
                    severity="warning",
                    message=f"SKILL.md mentions {path}, which does not exist",
                )
            )
    for path in sorted(skill.external_links):
        target = _link_target(skill, path)
        issues.append(
            Issue(
                code="external-link",
                file=path,
                severity="warning",
                message=f"{path} is a link out of the skill folder{target}: it is never read, "
                "committed or patched, so agents never see it",
            )
        )
    for path, content in skill.files.items():
        size = len(content.encode("utf-8") if isinstance(content, str) else content)
        if size > LARGE_FILE_BYTES:
            issues.append(
                Issue(
                    code="large-file",
                    file=path,
                    severity="warning",
                    message=f"{path} is {size / 1e6:.1f} MB: every rollout copies the skill into "
                    "its sandbox and every run commits it; keep skills small",
                )
            )
    for path in skill.files:
        if is_reference(path) and path not in linked:
            issues.append(
                Issue(
                    code="unlinked-reference",
                    file=path,
                    severity="warning",
                    message=f"{path} is not linked from SKILL.md, so agents may never read it",
                )
            )
    return issues


_GLUED_HEADING_RE = re.compile(r"^ {0,3}#{1,6}[^#\s]")
_GLUED_FENCE_RE = re.compile(r"\S.*?(`{3,}|~{3,})[ \t]*$")


def markdown_damage(path: str, text: str) -> list[Issue]:
    """Find markdown damage that silently changes a file's sections (warnings with lines).

    A fence that is never closed turns the rest of the file into code, so headings after it
    are not sections; a fence glued to a heading or to text (`````## Step````` or
    ``text`````) opens or fails to close a code block where the author meant the opposite;
    ``##Heading`` (no space) is plain text in CommonMark. Patches anchored on such headings
    fail with ``section-missing``; this names the line to repair.
    """
    issues: list[Issue] = []

    def warn(code: str, number: int, message: str) -> None:
        issues.append(Issue(code=code, file=path, line=number, severity="warning", message=message))

    state: FenceState = None
    opened_at = 0
    for number, line in enumerate(split_lines(text), start=1):
        bare = strip_eol(line)
        before = state
        state = fence_step(state, line)
        if before is None and state is not None:
            opened_at = number
            info = _FENCE_OPEN_RE.match(bare).group(2).strip()  # type: ignore[union-attr]
            if info.startswith("#"):
                warn(
                    "fence-glued-heading",
                    number,
                    f"line {number} opens a code fence and a heading at once ({bare.strip()!r});"
                    " put the fence and the heading on separate lines",
                )
        elif before is not None and state is not None and _GLUED_FENCE_RE.match(bare):
            warn(
                "fence-glued-text",
                number,
                f"line {number} ends with a fence marker after text, which does not close the"
                f" code block opened at line {opened_at}; put the fence on its own line",
            )
        elif state is None and before is None and _GLUED_HEADING_RE.match(bare):
            warn(
                "heading-no-space",
                number,
                f"line {number} looks like a heading but has no space after '#'"
                f" ({bare.strip()[:40]!r}), so it is plain text, not a section",
            )
    if state is not None:
        warn(
            "unclosed-fence",
            opened_at,
            f"the code fence opened at line {opened_at} is never closed, so everything after"
            " it is code and its headings are not sections",
        )
    return issues


def _frontmatter_agreement(text: str) -> list[Issue]:
    """Check the spec parser and our line-based parser see the same frontmatter block.

    skills-ref splits the file at the first two ``---`` substrings anywhere, so a ``---``
    inside a value, or a ``----`` line, makes it read something other than what a YAML
    frontmatter reader sees; patches would then edit a file whose metadata is misread.
    """
    doc = parse_markdown(text, frontmatter=True)
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    spec_inner = normalized.split("---", 2)[1]
    if doc.frontmatter_raw is None:
        reason = doc.frontmatter_error or "SKILL.md must start with a line '---'"
        return [Issue(code="malformed-frontmatter", file=SKILL_MD, message=reason)]
    raw = doc.frontmatter_raw.replace("\r\n", "\n")
    ours = raw[raw.index("\n") : raw.rstrip("\n").rindex("\n") + 1]
    if ours != spec_inner:
        return [
            Issue(
                code="malformed-frontmatter",
                file=SKILL_MD,
                message="frontmatter holds '---' inside a value or on a delimiter line with "
                "extra dashes; the spec parser splits there (quote or reword the value)",
            )
        ]
    return []


def validate_dir(path: str | os.PathLike[str], budgets: Budgets | None = None) -> list[Issue]:
    """Validate a skill folder on disk; like :func:`validate_skill` but never raises for
    a missing folder, a missing SKILL.md or a non-UTF-8 file: those become issues."""
    root = Path(path)
    if not root.exists():
        return [Issue(code="missing-path", file=".", message=f"Path does not exist: {root}")]
    if not root.is_dir():
        return [Issue(code="not-a-folder", file=".", message=file_not_folder(root))]
    skill_md = root / SKILL_MD
    if skill_md.is_symlink() and not _inside(skill_md.resolve(), root.resolve()):
        return [Issue(code="external-link", file=SKILL_MD, message=_outside_link_message(skill_md))]
    if not (root / SKILL_MD).is_file():
        return [
            Issue(
                code="missing-skill-md",
                file=SKILL_MD,
                message="Missing required file: SKILL.md",
                spec=True,
            )
        ]
    try:
        skill = load_skill(root)
    except SkillEncodingError as exc:
        return [Issue(code="encoding", file=exc.path, message=str(exc))]
    return validate_skill(skill, budgets)


def has_errors(issues: Iterable[Issue]) -> bool:
    """True when any issue is an error."""
    return any(issue.severity == "error" for issue in issues)


def invalid_summary(named: object, issues: Iterable[Issue]) -> str | None:
    """``skill NAMED does not validate (N errors; first: FILE: MESSAGE)`` when ``issues``
    hold errors, else None: the one line of every command that refuses or warns about it."""
    errors = [i for i in issues if i.severity == "error"]
    if not errors:
        return None
    return (
        f"skill {named} does not validate ({len(errors)} error{'s' * (len(errors) > 1)}; "
        f"first: {errors[0].file}: {errors[0].message})"
    )


def require_valid(path: str | os.PathLike[str]) -> None:
    """Refuse a skill folder that does not load or validate, in one line naming the first
    error (for commands that start work on a skill: evolve, repo snapshot).

    Raises:
        SkillError: the folder is missing, has no SKILL.md, or has validation errors.
    """
    if Path(path).is_file():  # "does not validate; see skill validate FILE" leads nowhere
        raise SkillError(file_not_folder(path))
    why = invalid_summary(path, validate_dir(path))
    if why:
        raise SkillError(f"{why}; see trace2skill skill validate {path}")
