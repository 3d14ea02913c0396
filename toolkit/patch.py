"""Patches: the Trace2Skill edit format, and a guarded, pure engine that applies it.

A :class:`Patch` is the paper's JSON object ``{"reasoning", "edits", "changelog_entries"}``
(official patches load as-is) plus optional ``id``, ``sources`` and ``support``. Each
:class:`Edit` names a ``file`` and one of eight ``op`` values.

:func:`apply_patch` applies a patch to a :class:`~toolkit.skill.Skill` in memory and returns
a :class:`PatchResult`; nothing touches the disk until :func:`write_result`. How it works:

1. **Static checks** per edit: the path stays inside the skill (no ``..``, no absolute path,
   no symlink leading out of the folder), the file is editable (SKILL.md or
   ``references/**/*.md`` unless ``allow_protected``), and it exists unless ``create``.
2. **Conflicts**: every edit is resolved against the ORIGINAL files to find the lines it
   reads (anchors, section headings) and writes (replaced or deleted lines). Two edits of
   the same file conflict when their ranges overlap and at least one writes; both are
   withheld (rejected with reason ``conflict``). Two insertions at the same spot do not
   conflict: they apply in patch order.
3. **Apply in order** against the progressively edited files. An edit is rejected and
   skipped (the others still apply) when its anchor or section is missing or ambiguous in
   its scope, when it would alter how the rest of the file is fenced (i.e. split a fenced
   code block), when it adds lines already present in that order (``duplicate-content``: a
   re-applied patch; code blocks of other sections than the one it lands in do not count),
   or when ``add_section`` would repeat an existing heading path
   (``section-exists``).
4. **Check the result**: the edited skill is validated (spec + size budgets). Any error that
   the original skill did not already have (a file already over budget counts only if it
   grows), and any reference file created by the patch but not mentioned in the final
   SKILL.md, is a result issue. If there is one, the patch is
   **withheld as a whole**: :attr:`PatchResult.files` is the original file map,
   :attr:`PatchResult.proposed` still holds the edited files so the diff can be reviewed,
   and :func:`write_result` refuses to write.

The ops (fields in brackets are optional):

* ``insert_after`` / ``insert_before`` (``target_text``, ``content``, [``target_section``]):
  ``content`` goes on new line(s) after the last line / before the first line of the
  anchor's occurrence.
* ``append_to_section`` (``target_section``, ``content``): where depends on ``append_mode``.
  ``own-text`` (default): after the last non-blank line of the section's own text, i.e.
  before its first subsection or the next heading; the blank lines that separated it from
  the next heading stay after the new text. ``subtree`` (the official Trace2Skill
  applicator's placement): after the last non-blank line of the section *and its
  subsections*, preceded by one blank line.
* ``replace_in_section`` (``old_text``, ``content``, [``target_section``]): the one
  occurrence of ``old_text`` becomes ``content`` ("" deletes it).
* ``add_section`` (``content`` starting with a heading line, [``after_section``]): a new
  section placed after ``after_section`` and its subsections (or at the end of the file),
  separated from its neighbours by blank lines.
* ``delete_section`` (``target_section``): the section and all its subsections.
* ``create`` (``content``): a new file; ``delete_file``: removes a file.

Inserted text gets the file's line endings and ends with a newline (unless it lands at the
end of a file that has no final newline, which keeps it that way).

Anchor rules: ``target_text`` and ``old_text`` match exactly (case, spaces), except that
``\\n`` in them matches ``\\r\\n`` in a CRLF file. They must occur exactly once in their
scope: the ``target_section`` subtree (the section and its subsections) when given, else the
whole file (frontmatter included, so a patch may edit the description).
``target_section`` / ``after_section`` are resolved by :func:`toolkit.skill.find_section`.
"""

from __future__ import annotations

import bisect
import difflib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from toolkit.errors import PatchError, PatchRejected, SectionLookupError, SkillError
from toolkit.skill import (
    SKILL_MD,
    Budgets,
    Issue,
    ParsedDoc,
    Section,
    Skill,
    detect_newline,
    fence_state_after,
    fence_step,
    find_section,
    is_editable,
    is_reference,
    linked_references,
    markdown_damage,
    parse_heading,
    parse_markdown,
    split_lines,
    validate_skill,
)

Op = Literal[
    "insert_after",
    "insert_before",
    "append_to_section",
    "replace_in_section",
    "add_section",
    "delete_section",
    "create",
    "delete_file",
]
OPS: tuple[str, ...] = get_args(Op)

# Fields each op needs (present and, except replacement content, non-empty).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "insert_after": ("target_text", "content"),
    "insert_before": ("target_text", "content"),
    "append_to_section": ("target_section", "content"),
    "replace_in_section": ("old_text", "content"),
    "add_section": ("content",),
    "delete_section": ("target_section",),
    "create": ("content",),
    "delete_file": (),
}
# Fields that may be an empty string: replacing with "" deletes text; an empty new file.
_MAY_BE_EMPTY = {("replace_in_section", "content"), ("create", "content")}

RejectReason = Literal[
    "bad-path",
    "path-escape",
    "protected",
    "missing-file",
    "file-exists",
    "binary-file",
    "section-missing",
    "section-ambiguous",
    "section-exists",
    "anchor-missing",
    "anchor-ambiguous",
    "bad-content",
    "conflict",
    "splits-code-fence",
    "duplicate-content",
]

# Ops that only add text: adding text the file already holds is rejected (re-applied patch).
_ADDING_OPS = frozenset({"insert_after", "insert_before", "append_to_section", "add_section"})

AppendMode = Literal["own-text", "subtree"]
"""Where ``append_to_section`` puts its text: end of the section's own text (before its first
subsection), or end of its whole subtree after a blank line (the official applicator)."""
APPEND_MODES: tuple[str, ...] = get_args(AppendMode)


def _hash(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


class Edit(BaseModel):
    """One edit of a patch (the paper's edit object plus an optional ``id``)."""

    model_config = ConfigDict(extra="ignore")

    file: str
    """Path relative to the skill folder, e.g. ``SKILL.md`` or ``references/api.md``."""
    op: Op
    """What to do; see the module docstring and docs for each op."""
    target_section: str | None = None
    """Section id, heading text, or ``## Heading``: the scope of the edit."""
    target_text: str | None = None
    """Anchor text for ``insert_after`` / ``insert_before`` (must occur once in scope)."""
    old_text: str | None = None
    """Text that ``replace_in_section`` replaces (must occur once in scope)."""
    after_section: str | None = None
    """Section after which (and after its subsections) ``add_section`` inserts; when it is
    absent ``target_section`` plays this role, and with neither the section goes last."""
    content: str | None = None
    """New text: inserted lines, replacement, a whole section, or a new file's text."""
    id: str | None = None
    """Content hash of the edit (computed when missing)."""

    @model_validator(mode="after")
    def _check_fields(self) -> Edit:
        for name in _REQUIRED[self.op]:
            value = getattr(self, name)
            if value is None:
                raise ValueError(f"{self.op} needs '{name}'")
            if value == "" and (self.op, name) not in _MAY_BE_EMPTY:
                raise ValueError(f"{self.op} needs a non-empty '{name}'")
        if self.op == "replace_in_section" and self.old_text == self.content:
            raise ValueError("replace_in_section: 'old_text' and 'content' are identical")
        if self.id is None:
            self.id = self.content_hash()
        return self

    def content_hash(self) -> str:
        """Hash of the edit's fields (without ``id``): equal edits get equal ids."""
        return _hash(self.model_dump(exclude={"id"}, exclude_none=True))


class Patch(BaseModel):
    """A patch: the paper's format plus provenance (``id``, ``sources``, ``support``)."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = 1
    """Version of this record's layout."""
    reasoning: str = ""
    """Why the edits help (the analyst's or merge operator's explanation)."""
    edits: list[Edit]
    """Edits, applied in order."""
    changelog_entries: list[str] = Field(default_factory=list)
    """One line per user-visible change (the commit message body)."""
    id: str | None = None
    """Content hash of reasoning + edits (12 hex digits) when missing."""
    sources: list[str] = Field(default_factory=list)
    """Ids of the leaf patches that support this one (empty for a leaf)."""
    support: int | None = None
    """How many leaf patches support it: len(set(sources)), or 1 for a leaf."""
    normalizations: list[str] = Field(default_factory=list, exclude=True)
    """What loading changed to fit the official pipeline's shapes onto ours (not stored)."""

    @model_validator(mode="after")
    def _fill_ids(self) -> Patch:
        if self.id is None:
            self.id = self.content_hash()
        if self.support is None:
            self.support = len(set(self.sources)) or 1
        return self

    def content_hash(self) -> str:
        """Hash of reasoning and edits (edit ids excluded): stable across re-runs."""
        edits = [edit.model_dump(exclude={"id"}, exclude_none=True) for edit in self.edits]
        return _hash({"reasoning": self.reasoning, "edits": edits})

    def official_dict(self) -> dict[str, Any]:
        """The patch in the paper's format only (no ids, sources, support, version)."""
        return {
            "reasoning": self.reasoning,
            "edits": [e.model_dump(exclude={"id"}, exclude_none=True) for e in self.edits],
            "changelog_entries": list(self.changelog_entries),
        }


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = list(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        where = ""
        if len(loc) >= 2 and loc[0] == "edits" and isinstance(loc[1], int):
            where = f"edit {loc[1]}"
            loc = loc[2:]
        if loc:
            field = ".".join(str(x) for x in loc)
            where = f"{where}: field '{field}'" if where else f"field '{field}'"
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


# Op spellings the official pipeline (or its model) uses, keyed by the letters only: covers
# camelCase (insertAfter), kebab-case and the official create_file / deleteFile names.
_OP_KEYS: dict[str, str] = {
    **{op.replace("_", ""): op for op in OPS},
    "createfile": "create",
    "newfile": "create",
    "removefile": "delete_file",
}


def _normalize_edit(index: int, edit: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Map one official-shaped edit onto ours, noting each change in ``notes``."""
    edit = dict(edit)
    known = set(Edit.model_fields)
    for name in [k for k in edit if k not in known]:
        # Kept out of the edit (extra fields are ignored), but said: a typo such as
        # 'after_sectoin' would otherwise change where the edit lands without a word.
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        notes.append(f"edit {index}: unknown field {name!r} ignored{hint}")
    op = edit.get("op")
    if isinstance(op, str) and op not in OPS:
        canonical = _OP_KEYS.get(re.sub(r"[^a-z]", "", op.lower()))
        if canonical is not None:
            edit["op"] = canonical
            notes.append(f"edit {index}: op {op!r} read as {canonical!r}")
    op = edit.get("op")
    if op not in OPS:
        return edit
    # The official writer fills every field, "" meaning "not used": drop the unused ones
    # (an empty target_section = whole file, an empty after_section = end of file).
    emptied = [
        name
        for name in ("target_section", "target_text", "old_text", "after_section")
        if edit.get(name) == "" and name not in _REQUIRED[op]
    ]
    for name in emptied:
        del edit[name]
    if emptied:
        notes.append(f"edit {index}: empty {', '.join(emptied)} read as not given")
    content = edit.get("content")
    heading = edit.get("target_section")
    if (
        op == "add_section"
        and isinstance(content, str)
        and isinstance(heading, str)
        and heading.strip()
        and parse_heading(content.lstrip("\r\n").split("\n", 1)[0]) is None
    ):
        # Official shape: the new heading in target_section, only the body in content.
        title = heading.strip()
        line = title if parse_heading(title) is not None else f"## {title}"
        body = content.strip("\r\n")
        edit["content"] = f"{line}\n\n{body}" if body.strip() else line
        del edit["target_section"]
        notes.append(f"edit {index}: add_section heading {line!r} taken from target_section")
    return edit


def parse_patch(data: Any, *, source: str = "patch") -> Patch:
    """Validate a decoded JSON value as a :class:`Patch`.

    Official-pipeline shapes are accepted and mapped onto ours (op aliases such as
    ``createFile`` or ``insertAfter``, unused fields given as ``""``, ``add_section`` with
    its heading in ``target_section``); :attr:`Patch.normalizations` lists what changed.

    Raises:
        PatchError: one line naming the edit index and field at fault.
    """
    if not isinstance(data, dict):
        raise PatchError(f"{source}: expected a JSON object with an 'edits' list")
    edits = data.get("edits")
    if not isinstance(edits, list):
        raise PatchError(f"{source}: 'edits' must be a list of edit objects")
    notes: list[str] = []
    normalized = []
    for index, edit in enumerate(edits):
        if not isinstance(edit, dict):
            raise PatchError(f"{source}: edit {index}: must be an object, not {edit!r:.40}")
        edit = _normalize_edit(index, edit, notes)
        op = edit.get("op")
        if op not in OPS:
            raise PatchError(
                f"{source}: edit {index}: unknown op {op!r}; expected one of {', '.join(OPS)}"
            )
        normalized.append(edit)
    try:
        patch = Patch.model_validate({**data, "edits": normalized})
    except ValidationError as exc:
        raise PatchError(f"{source}: {_format_validation(exc)}") from None
    patch.normalizations = notes
    return patch


_FENCED_JSON = re.compile(r"```(?:json)?[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)


def _extract_json(text: str) -> tuple[Any, str] | None:
    """The JSON object in a model reply: a fenced ```json block, or text around ``{...}``."""
    candidates = [
        (m.group(1), "read the JSON inside a ``` fence") for m in _FENCED_JSON.finditer(text)
    ]
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append((text[first : last + 1], "ignored the text around the JSON object"))
    for candidate, note in candidates:
        try:
            return json.loads(candidate), note
        except json.JSONDecodeError:
            continue
    return None


def load_patch(path: str | os.PathLike[str]) -> Patch:
    """Read a patch JSON file (official format or ours), or a saved model reply holding one.

    A reply that wraps the JSON object in a ```json fence or in prose is accepted;
    this, like the shapes :func:`parse_patch` maps, is listed in ``normalizations``.

    Raises:
        PatchError: unreadable file, invalid JSON (with line and column), or a malformed
            patch (unknown op, missing field, wrong type; naming the edit index).
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise PatchError(f"cannot read patch {file}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PatchError(f"{file}: not UTF-8 text") from None
    note = None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        found = _extract_json(text)
        if found is None:
            raise PatchError(
                f"{file}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        data, note = found
    patch = parse_patch(data, source=str(file))
    if note is not None:
        patch.normalizations.insert(0, note)
    return patch


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


class EditReport(BaseModel):
    """What happened to one edit."""

    index: int
    """Position of the edit in the patch."""
    id: str
    """The edit's id."""
    op: str
    """The edit's op."""
    file: str
    """The edit's file as written in the patch."""
    status: Literal["applied", "rejected"]
    """Whether the edit was applied to the proposed files."""
    reason: RejectReason | None = None
    """Why it was rejected (a stable code)."""
    message: str = ""
    """Human explanation of the rejection, or where it applied."""
    original_lines: tuple[int, int] | None = None
    """The 1-based line range of the original file the edit touches, when resolvable."""


class PatchResult(BaseModel):
    """The outcome of :func:`apply_patch`: per-edit reports and the resulting files."""

    skill_name: str
    """Folder name of the skill patched."""
    patch_id: str
    """Id of the patch applied."""
    original: dict[str, str | bytes]
    """The skill's files before the patch."""
    proposed: dict[str, str | bytes]
    """The files with every edit that passed its checks applied."""
    edits: list[EditReport]
    """One report per edit, in patch order."""
    issues: list[Issue] = Field(default_factory=list)
    """Validation findings the patch introduced; any error withholds the whole patch."""

    @property
    def all_applied(self) -> bool:
        """Every edit applied."""
        return all(report.status == "applied" for report in self.edits)

    @property
    def valid(self) -> bool:
        """The proposed skill introduces no validation error."""
        return not any(issue.severity == "error" for issue in self.issues)

    @property
    def clean(self) -> bool:
        """Every edit applied and the result is valid: the only state write_result accepts."""
        return self.all_applied and self.valid

    @property
    def files(self) -> dict[str, str | bytes]:
        """The files to use: the proposed ones if valid, else the original (withheld)."""
        return self.proposed if self.valid else self.original

    @property
    def changed_files(self) -> list[str]:
        """Paths created, modified or deleted by the proposed files."""
        keys = set(self.original) | set(self.proposed)
        return sorted(p for p in keys if self.original.get(p) != self.proposed.get(p))

    @property
    def rejected(self) -> list[EditReport]:
        """Reports of the rejected edits."""
        return [report for report in self.edits if report.status == "rejected"]

    def diff(self, prefix: str = "") -> str:
        """Unified diff of the proposed files against the original (``a/`` / ``b/`` paths)."""
        return unified_diff(self.original, self.proposed, prefix=prefix)

    def summary(self) -> str:
        """One line: how many edits applied, and whether the result is withheld."""
        applied = sum(report.status == "applied" for report in self.edits)
        text = f"patch {self.patch_id}: {applied}/{len(self.edits)} edits applied"
        errors = [i for i in self.issues if i.severity == "error"]
        if errors:
            text += f"; result withheld ({errors[0].code}: {errors[0].message})"
        return text


class _Reject(Exception):
    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class _Splice(BaseModel):
    """A line-level change: lines [start, end) (0-based) of a file become ``new_lines``."""

    start: int
    end: int
    new_lines: list[str]
    reads: tuple[int, int] | None = None
    """1-based inclusive lines the edit depends on without changing (anchors, headings)."""
    writes: tuple[int, int] | None = None
    """1-based inclusive lines the edit replaces or deletes."""
    heading_at: int | None = None
    """add_section: index in ``new_lines`` of the new section's heading."""


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


def _normalize_path(path: str) -> str:
    """Normalise an edit's path to a clean relative POSIX path inside the skill.

    Raises:
        _Reject: ``bad-path`` (empty, NUL, backslashes) or ``path-escape`` (absolute, ``..``).
    """
    if not path or "\x00" in path:
        raise _Reject("bad-path", f"invalid path {path!r}")
    if "\\" in path:
        raise _Reject("bad-path", f"path {path!r} uses '\\'; write paths with '/'")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise _Reject("path-escape", f"absolute path {path!r}; use a path inside the skill")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _Reject("path-escape", f"path {path!r} leaves the skill folder ('..')")
    if not parts:
        raise _Reject("bad-path", f"path {path!r} names no file")
    return "/".join(parts)


def _check_links(skill: Skill, path: str) -> None:
    parts = path.split("/")
    real_root = skill.root.resolve() if skill.root is not None else None
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        if prefix in skill.external_links:
            raise _Reject("path-escape", f"{prefix} is a symlink leading out of the skill folder")
        if skill.root is not None and real_root is not None:
            candidate = skill.root / prefix
            if candidate.is_symlink():
                target = candidate.resolve()
                if target != real_root and real_root not in target.parents:
                    raise _Reject(
                        "path-escape", f"{prefix} is a symlink leading out of the skill folder"
                    )


def _static_checks(skill: Skill, edit: Edit, allow_protected: bool) -> str:
    path = _normalize_path(edit.file)
    _check_links(skill, path)
    if not allow_protected and not is_editable(path):
        raise _Reject(
            "protected",
            f"{path} is protected: patches edit SKILL.md and references/*.md only "
            "(--allow-protected, allow_protected=True in Python, edits scripts/assets)",
        )
    return path


# ---------------------------------------------------------------------------------------------
# Planning one edit against a text
# ---------------------------------------------------------------------------------------------


class _Text:
    """A file's text with helpers to map offsets to lines."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.lines = split_lines(text)
        self.newline = detect_newline(text)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        self._doc: ParsedDoc | None = None

    @property
    def doc(self) -> ParsedDoc:
        if self._doc is None:
            self._doc = parse_markdown(self.text, frontmatter=self.path == SKILL_MD)
        return self._doc

    def line_of(self, offset: int) -> int:
        """0-based index of the line holding character ``offset``."""
        return bisect.bisect_right(self.starts, offset) - 1

    def adapt(self, value: str) -> str:
        """Give LLM-written text the file's line endings (whatever endings it came with)."""
        value = value.replace("\r\n", "\n")
        return value.replace("\n", "\r\n") if self.newline == "\r\n" else value

    def section(self, query: str) -> Section:
        try:
            return find_section(self.doc.sections, query)
        except SectionLookupError as exc:
            message = f"{self.path}: {exc}"
            if exc.reason == "section-missing":
                message += self.missing_hint(query)
            raise _Reject(exc.reason, message) from None  # type: ignore[arg-type]

    def missing_hint(self, query: str) -> str:
        """Why a section name matched nothing: the line that only looks like that heading
        (and the markdown damage before it), or the nearest real section names."""
        wanted = " ".join(query.strip().lstrip("#").split()).casefold()
        starts = {s.start_line for s in self.doc.sections if s.level > 0}
        for number, line in enumerate(self.lines, start=1):
            text = " ".join(line.strip().lstrip("`~").strip().lstrip("#").split()).casefold()
            if not wanted or text != wanted or number in starts or "#" not in line:
                continue
            damage = [i for i in markdown_damage(self.path, self.text) if (i.line or 0) <= number]
            at = [i.message for i in damage if i.line == damage[-1].line]
            why = "".join(f"; {message}" for message in at)
            return (
                f" (line {number} {line.strip()!r} looks like that heading but is not one: "
                f"it is inside a code block or not a valid heading{why})"
            )
        names = {s.id: s.id for s in self.doc.sections if s.level > 0}
        names.update({s.heading.casefold(): s.id for s in self.doc.sections if s.level > 0})
        close = difflib.get_close_matches(wanted, list(names), n=3, cutoff=0.6)
        ids = list(dict.fromkeys(names[c] for c in close))
        return f"; did you mean {', '.join(repr(i) for i in ids)}?" if ids else ""

    def scope(self, target_section: str | None) -> tuple[int, int, str]:
        if target_section is None:
            return 0, len(self.text), "the file"
        sec = self.section(target_section)
        lo = self.starts[sec.start_line - 1]
        hi = self.starts[sec.subtree_end_line]
        return lo, hi, f"section {sec.id!r}"

    def find_once(self, needle: str, target_section: str | None, what: str) -> int:
        lo, hi, where = self.scope(target_section)
        needle = self.adapt(needle)
        hits: list[int] = []
        index = self.text.find(needle, lo, hi)
        while index != -1:
            hits.append(index)
            index = self.text.find(needle, index + 1, hi)
        shown = needle.strip().replace("\r", "").replace("\n", "\\n")[:60]
        if not hits:
            raise _Reject("anchor-missing", f"{what} {shown!r} not found in {where}")
        if len(hits) > 1:
            lines = ", ".join(str(self.line_of(h) + 1) for h in hits[:5])
            raise _Reject(
                "anchor-ambiguous",
                f"{what} {shown!r} occurs {len(hits)} times in {where} (lines {lines}); "
                "it must match exactly once",
            )
        return hits[0]

    def block(self, content: str) -> list[str]:
        """Content as whole lines ending with the file's newline."""
        content = self.adapt(content)
        if not content.endswith("\n"):
            content += self.newline
        return split_lines(content)

    def insert_after_line(self, index: int, new: list[str]) -> tuple[int, int, list[str]]:
        """Splice inserting ``new`` after 0-based line ``index`` (keeps a missing EOF newline)."""
        line = self.lines[index]
        if line.endswith("\n"):
            return index + 1, index + 1, new
        # The anchor is the last line and has no newline: add one, and drop the block's
        # final newline so the file still ends without one.
        tail = "".join(new)
        tail = tail[: -len(self.newline)] if tail.endswith(self.newline) else tail
        return index, index + 1, [line + self.newline, *split_lines(tail)]


def _plan(current: _Text, edit: Edit, append_mode: AppendMode = "own-text") -> _Splice:
    """Compute the line splice an edit makes to ``current`` (raises _Reject)."""
    op = edit.op
    if op in ("insert_after", "insert_before"):
        assert edit.target_text is not None and edit.content is not None
        pos = current.find_once(edit.target_text, edit.target_section, "anchor")
        first = current.line_of(pos)
        last = current.line_of(pos + len(current.adapt(edit.target_text)) - 1)
        reads = (first + 1, last + 1)
        new = current.block(edit.content)
        if op == "insert_before":
            return _Splice(start=first, end=first, new_lines=new, reads=reads)
        start, end, lines = current.insert_after_line(last, new)
        return _Splice(start=start, end=end, new_lines=lines, reads=reads)

    if op == "append_to_section":
        assert edit.target_section is not None and edit.content is not None
        sec = current.section(edit.target_section)
        stop = sec.subtree_end_line if append_mode == "subtree" else sec.end_line
        last = sec.start_line - 1
        for index in range(stop - 1, sec.start_line - 2, -1):
            if current.lines[index].strip():
                last = index
                break
        block = current.block(edit.content)
        if append_mode == "subtree":
            block = [current.newline, *block]
        start, end, lines = current.insert_after_line(last, block)
        return _Splice(
            start=start, end=end, new_lines=lines, reads=(sec.start_line, sec.start_line)
        )

    if op == "replace_in_section":
        assert edit.old_text is not None and edit.content is not None
        pos = current.find_once(edit.old_text, edit.target_section, "old_text")
        old = current.adapt(edit.old_text)
        first = current.line_of(pos)
        last = current.line_of(pos + len(old) - 1)
        segment = (
            current.text[current.starts[first] : pos]
            + current.adapt(edit.content)
            + current.text[pos + len(old) : current.starts[last + 1]]
        )
        return _Splice(
            start=first, end=last + 1, new_lines=split_lines(segment), writes=(first + 1, last + 1)
        )

    if op == "add_section":
        assert edit.content is not None
        new = current.block(edit.content.lstrip("\r\n"))
        if parse_heading(new[0]) is None:
            raise _Reject(
                "bad-content",
                "add_section content must start with a markdown heading line (e.g. '## Title')",
            )
        anchor = edit.after_section or edit.target_section
        reads = None
        index = len(current.lines)
        if anchor is not None:
            sec = current.section(anchor)
            index = sec.subtree_end_line
            reads = (sec.start_line, sec.start_line)
        if index < len(current.lines) and new[-1].strip():
            new = [*new, current.newline]  # blank line before the following heading
        if index > 0 and current.lines[index - 1].strip():
            prev = current.lines[index - 1]
            if not prev.endswith("\n"):
                return _Splice(
                    start=index - 1,
                    end=index,
                    new_lines=[prev + current.newline, current.newline, *new],
                    reads=reads,
                    heading_at=2,
                )
            return _Splice(
                start=index, end=index, new_lines=[current.newline, *new], reads=reads, heading_at=1
            )
        return _Splice(start=index, end=index, new_lines=new, reads=reads, heading_at=0)

    if op == "delete_section":
        assert edit.target_section is not None
        sec = current.section(edit.target_section)
        return _Splice(
            start=sec.start_line - 1,
            end=sec.subtree_end_line,
            new_lines=[],
            writes=(sec.start_line, sec.subtree_end_line),
        )
    raise AssertionError(f"no text plan for {op}")  # create/delete_file handled by caller


def _code_lines_elsewhere(current: _Text, at: int) -> set[int]:
    """0-based lines inside fenced code blocks (fence lines included) of a markdown file,
    except those in the section whose own text holds line ``at``."""
    if not current.path.endswith(".md"):
        return set()
    first = current.doc.body_start_line - 1 if current.path == SKILL_MD else 0
    skip_lo = skip_hi = -1
    for sec in current.doc.sections:
        if sec.start_line - 1 <= at < sec.end_line:
            skip_lo, skip_hi = sec.start_line - 1, sec.end_line
    code: set[int] = set()
    state = None
    for index in range(first, len(current.lines)):
        after = fence_step(state, current.lines[index])
        if (state is not None or after is not None) and not skip_lo <= index < skip_hi:
            code.add(index)
        state = after
    return code


def _check_duplicate(current: _Text, content: str, splice: _Splice) -> None:
    """Reject adding lines that already stand, in the same order, in the file (a re-applied
    patch). Code blocks of other sections do not count: a one-line ``import pandas as pd``
    is not a repeat because an unrelated example elsewhere imports pandas too."""
    wanted = [line.strip() for line in split_lines(content.strip("\r\n"))]
    if not any(re.search(r"\w", line) for line in wanted):
        return
    code = _code_lines_elsewhere(current, max(splice.start - 1, 0))
    have = [None if i in code else line.strip() for i, line in enumerate(current.lines)]
    for start in range(len(have) - len(wanted) + 1):
        if have[start : start + len(wanted)] == wanted:
            raise _Reject(
                "duplicate-content",
                f"{current.path}: the content is already present at line {start + 1}; "
                "nothing to add",
            )


def _check_fences(current: _Text, splice: _Splice) -> None:
    """Reject a splice that changes the fence state of the text after it."""
    if not current.path.endswith(".md"):
        return
    first = current.doc.body_start_line - 1 if current.path == SKILL_MD else 0
    before = fence_state_after(current.lines[min(first, splice.start) : splice.start])
    old_after = fence_state_after(current.lines[splice.start : splice.end], before)
    new_after = fence_state_after(splice.new_lines, before)
    if old_after != new_after:
        raise _Reject(
            "splits-code-fence",
            f"{current.path}: the edit at line {splice.start + 1} would open or close a fenced "
            "code block and change how the rest of the file reads; keep fences balanced",
        )


def _check_new_section(current: _Text, splice: _Splice, new_text: str) -> None:
    """add_section must not duplicate a heading path that already exists."""
    assert splice.heading_at is not None
    heading_line = splice.start + splice.heading_at + 1
    doc = parse_markdown(new_text, frontmatter=current.path == SKILL_MD)
    added = next(s for s in doc.headed_sections if s.start_line == heading_line)
    twins = [s for s in doc.headed_sections if s.path == added.path and s is not added]
    if twins:
        raise _Reject(
            "section-exists",
            f"{current.path}: a section {' > '.join(added.path)!r} already exists "
            f"(line {twins[0].start_line}); edit it instead",
        )


# ---------------------------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------------------------


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _original_touch(
    original: Mapping[str, str | bytes],
    path: str,
    edit: Edit,
    cache: dict[str, _Text],
    append_mode: AppendMode,
) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(reads, writes) line ranges of the edit in the original file, if resolvable there."""
    content = original.get(path)
    if not isinstance(content, str):
        return None, None
    if path not in cache:
        cache[path] = _Text(path, content)
    if edit.op == "delete_file":
        return None, (1, max(1, len(cache[path].lines)))
    if edit.op == "create":
        return None, None
    try:
        splice = _plan(cache[path], edit, append_mode)
    except _Reject:
        # Not resolvable in the original (e.g. anchored on text an earlier edit adds): it is
        # checked against the edited text when applied.
        return None, None
    return splice.reads, splice.writes


def apply_patch(
    skill: Skill,
    patch: Patch,
    *,
    allow_protected: bool = False,
    budgets: Budgets | None = None,
    strict: bool = False,
    append_mode: AppendMode | None = None,
) -> PatchResult:
    """Apply a patch to a skill in memory, with the guardrails in the module docstring.

    Args:
        skill: The skill to patch (unchanged by this call).
        patch: The patch; its edits apply in order.
        allow_protected: Let edits touch files other than SKILL.md and references/*.md.
        budgets: Size budgets the result must fit (default: the ``[patch]`` table of
            ``./trace2skill.toml``, else 500 / 300 lines; see :mod:`toolkit.settings`).
        strict: Raise :class:`PatchRejected` unless the patch applies cleanly.
        append_mode: Placement of ``append_to_section`` (see the module docstring);
            ``subtree`` gives the official Trace2Skill applicator's result (default: the
            project's ``[patch]`` table, else ``own-text``).

    Returns:
        A :class:`PatchResult`; ``result.clean`` tells whether every edit applied and the
        result is valid.
    """
    if budgets is None or append_mode is None:
        from toolkit.settings import project_patch_settings

        project = project_patch_settings()
        if budgets is None:
            defaults = Budgets()
            budgets = Budgets(
                skill_md_lines=project.max_skill_lines or defaults.skill_md_lines,
                reference_lines=project.max_reference_lines or defaults.reference_lines,
            )
        append_mode = append_mode or project.append_mode or "own-text"  # type: ignore[assignment]
    original = dict(skill.files)
    reports: list[EditReport | None] = [None] * len(patch.edits)
    paths: list[str] = [""] * len(patch.edits)
    touches: dict[int, tuple[tuple[int, int] | None, tuple[int, int] | None]] = {}
    parsed_originals: dict[str, _Text] = {}

    def reject(index: int, reason: RejectReason, message: str) -> None:
        edit = patch.edits[index]
        lines = touches.get(index, (None, None))
        reports[index] = EditReport(
            index=index,
            id=edit.id or edit.content_hash(),
            op=edit.op,
            file=edit.file,
            status="rejected",
            reason=reason,
            message=message,
            original_lines=lines[1] or lines[0],
        )

    for index, edit in enumerate(patch.edits):
        try:
            paths[index] = _static_checks(skill, edit, allow_protected)
        except _Reject as exc:
            reject(index, exc.reason, exc.message)
            continue
        touches[index] = _original_touch(
            original, paths[index], edit, parsed_originals, append_mode
        )

    # Conflicts: overlapping original ranges where at least one edit writes.
    partners: dict[int, list[int]] = {}
    candidates = [i for i in touches if reports[i] is None]
    for pos, i in enumerate(candidates):
        for j in candidates[pos + 1 :]:
            if paths[i] != paths[j]:
                continue
            (ri, wi), (rj, wj) = touches[i], touches[j]
            pairs = [(wi, wj), (wi, rj), (ri, wj)]
            if any(a is not None and b is not None and _overlap(a, b) for a, b in pairs):
                partners.setdefault(i, []).append(j)
                partners.setdefault(j, []).append(i)
    for index, others in partners.items():
        reads, writes = touches[index]
        span = writes or reads
        assert span is not None
        names = ", ".join(str(o) for o in others)
        reject(
            index,
            "conflict",
            f"conflicts with edit {names}: both touch {paths[index]} lines "
            f"{span[0]}-{span[1]} of the original; both withheld",
        )

    files: dict[str, str | bytes] = dict(original)
    for index, edit in enumerate(patch.edits):
        if reports[index] is not None:
            continue
        path = paths[index]
        try:
            message = _apply_one(files, path, edit, append_mode)
        except _Reject as exc:
            reject(index, exc.reason, exc.message)
            continue
        reads, writes = touches.get(index, (None, None))
        reports[index] = EditReport(
            index=index,
            id=edit.id or edit.content_hash(),
            op=edit.op,
            file=edit.file,
            status="applied",
            message=message,
            original_lines=writes or reads,
        )

    final_reports = [r for r in reports if r is not None]
    issues = _result_issues(skill, files, patch, paths, final_reports, budgets)
    result = PatchResult(
        skill_name=skill.name,
        patch_id=patch.id or patch.content_hash(),
        original=original,
        proposed=files,
        edits=final_reports,
        issues=issues,
    )
    if strict and not result.clean:
        raise PatchRejected(_rejection_line(result))
    return result


def _apply_one(
    files: dict[str, str | bytes], path: str, edit: Edit, append_mode: AppendMode
) -> str:
    """Apply one edit to ``files`` in place; return a short description."""
    if edit.op == "create":
        if path in files:
            raise _Reject("file-exists", f"{path} already exists; edit it instead of create")
        clash = [p for p in files if p.startswith(path + "/") or path.startswith(p + "/")]
        if clash:
            raise _Reject("bad-path", f"{path} clashes with existing {clash[0]}")
        content = edit.content or ""
        if content and not content.endswith("\n"):
            content += "\n"
        files[path] = content
        return f"created {path} ({len(split_lines(content))} lines)"
    if path not in files:
        raise _Reject("missing-file", f"{path} does not exist in the skill (use op 'create')")
    if edit.op == "delete_file":
        del files[path]
        return f"deleted {path}"
    content = files[path]
    if isinstance(content, bytes):
        raise _Reject("binary-file", f"{path} is not a UTF-8 text file")
    current = _Text(path, content)
    splice = _plan(current, edit, append_mode)
    if edit.op in _ADDING_OPS and edit.content is not None:
        _check_duplicate(current, edit.content, splice)
    _check_fences(current, splice)
    lines = current.lines
    new_text = "".join([*lines[: splice.start], *splice.new_lines, *lines[splice.end :]])
    if edit.op == "add_section":
        _check_new_section(current, splice, new_text)
    files[path] = new_text
    removed = splice.end - splice.start
    return f"{path}: line {splice.start + 1}: -{removed} +{len(splice.new_lines)} lines"


def _result_issues(
    skill: Skill,
    files: dict[str, str | bytes],
    patch: Patch,
    paths: list[str],
    reports: list[EditReport],
    budgets: Budgets,
) -> list[Issue]:
    """Issues the patch introduces (errors withhold the patch)."""
    if files == dict(skill.files):
        return []
    try:
        new_skill = Skill.from_files(skill.name, files, root=skill.root)
    except SkillError as exc:  # e.g. bytes written into a references file
        return [Issue(code="encoding", file=".", message=str(exc))]
    created_refs = {
        paths[r.index]: r.index
        for r in reports
        if r.status == "applied" and r.op == "create" and is_reference(paths[r.index])
    }
    issues: list[Issue] = []
    old_issues = validate_skill(skill, budgets)
    before = {(i.code, i.file, i.message) for i in old_issues}
    over_budget = {i.file for i in old_issues if i.code == "too-long"}
    for issue in validate_skill(new_skill, budgets):
        if (issue.code, issue.file, issue.message) in before:
            continue
        if issue.code == "too-long" and issue.file in over_budget:
            # Already over budget: only growing it further is a new problem.
            old_text, new_text = skill.files.get(issue.file), files.get(issue.file)
            if (
                isinstance(old_text, str)
                and isinstance(new_text, str)
                and len(split_lines(new_text)) <= len(split_lines(old_text))
            ):
                continue
        if issue.code == "unlinked-reference" and issue.file in created_refs:
            continue  # reported as an error below
        issues.append(issue)
    skill_md = files.get(SKILL_MD)
    linked = linked_references(skill_md) if isinstance(skill_md, str) else set()
    for path, index in sorted(created_refs.items()):
        if path in files and path not in linked:
            issues.append(
                Issue(
                    code="unlinked-reference",
                    file=path,
                    edit=index,
                    message=f"edit {index} creates {path} but SKILL.md does not link it; "
                    f"add a link such as [{Path(path).stem}]({path})",
                )
            )
    return issues


def _rejection_line(result: PatchResult) -> str:
    parts = [result.summary()]
    for report in result.rejected:
        parts.append(f"edit {report.index} ({report.op}) {report.reason}: {report.message}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Diff and writing
# ---------------------------------------------------------------------------------------------


def unified_diff(
    original: Mapping[str, str | bytes], files: Mapping[str, str | bytes], prefix: str = ""
) -> str:
    """A git-style unified diff between two file maps (``a/`` and ``b/`` paths).

    Args:
        original: The files before.
        files: The files after.
        prefix: Prepended to every path (e.g. ``skills/demo/``) so the diff applies at a
            repository root.
    """
    out: list[str] = []
    for path in sorted(set(original) | set(files)):
        before, after = original.get(path), files.get(path)
        if before == after:
            continue
        name = f"{prefix}{path}"
        out.append(f"diff --git a/{name} b/{name}\n")
        if before is None:
            out.append("new file mode 100644\n")
        elif after is None:
            out.append("deleted file mode 100644\n")
        if isinstance(before, bytes) or isinstance(after, bytes):
            out.append(f"Binary files a/{name} and b/{name} differ\n")
            continue
        a_lines = split_lines(before or "")
        b_lines = split_lines(after or "")
        fromfile = f"a/{name}" if before is not None else "/dev/null"
        tofile = f"b/{name}" if after is not None else "/dev/null"
        for line in difflib.unified_diff(a_lines, b_lines, fromfile, tofile):
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def write_result(skill_dir: str | os.PathLike[str], result: PatchResult) -> list[str]:
    """Write a cleanly applied patch result into the skill folder, file by file atomically.

    Each changed file is written to a temporary file beside it and renamed over the old one;
    deleted files are removed last. Nothing is written unless ``result.clean`` and every file
    the patch changes still has the content it had when the skill was loaded.

    Returns:
        The relative paths written or deleted.

    Raises:
        PatchRejected: the patch did not apply cleanly (the folder is left untouched).
        PatchError: the folder changed since loading, or a path would leave the folder.
    """
    if not result.clean:
        raise PatchRejected(f"{_rejection_line(result)}; nothing written")
    root = Path(skill_dir)
    real_root = root.resolve()
    changed = result.changed_files
    for rel in changed:
        target = root / rel
        parent = target.parent.resolve()
        if parent != real_root and real_root not in parent.parents:
            raise PatchError(f"{rel} would be written outside {root}; nothing written")
        if target.is_symlink():
            raise PatchError(f"{rel} is a symlink; refusing to replace it; nothing written")
        before = result.original.get(rel)
        on_disk = target.read_bytes() if target.is_file() else None
        expected = before.encode("utf-8") if isinstance(before, str) else before
        if on_disk != expected:
            raise PatchError(
                f"{rel} changed on disk since the skill was loaded; reload and apply again"
            )
    temps: list[tuple[Path, Path]] = []
    made_dirs: list[Path] = []
    try:
        for rel in changed:
            content = result.proposed.get(rel)
            if content is None:
                continue
            target = root / rel
            missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
            for directory in reversed(missing):
                directory.mkdir()
                made_dirs.append(directory)
            data = content.encode("utf-8") if isinstance(content, str) else content
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".t2s-", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if target.exists():
                os.chmod(tmp, target.stat().st_mode & 0o7777)
            else:
                os.chmod(tmp, 0o644)
            temps.append((Path(tmp), target))
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        for directory in reversed(made_dirs):
            directory.rmdir()
        raise
    for tmp, target in temps:
        os.replace(tmp, target)
    for rel in changed:
        if rel not in result.proposed:
            (root / rel).unlink()
    return changed
