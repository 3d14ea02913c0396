"""Line provenance: which commit wrote a line of a skill, and the patches/trajectories behind it.

``git blame --porcelain`` (one process per file) names the commit that introduced each line.
A line the textual union kept from a child is blamed on that child (a patch commit); a line
the merge operator wrote is blamed on the merge commit itself. The commit's trailers then give
the patch ids (its own, or the merge's leaf ``Sources``), and the patch commits' trailers give
the trajectories.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from toolkit.errors import RepoError
from toolkit.repo.store import REF_ROOT, SkillRepo
from toolkit.repo.trailers import parse_trailers, subject_of


class LineProvenance(BaseModel):
    """Where one line of a file at a revision came from."""

    schema_version: int = 1
    file: str
    """Repository-relative path."""
    line: int
    """1-based line number at the blamed revision."""
    text: str
    """The line's text (without newline)."""
    commit: str
    """Commit that introduced the line."""
    subject: str
    """That commit's subject line."""
    run: str | None = None
    """The trace2skill run of the commit; None for the user's own commits."""
    kind: str | None = None
    """Commit kind (base, patch, merge, ...)."""
    patches: list[str] = Field(default_factory=list)
    """Leaf patch ids behind the line."""
    trajectories: list[str] = Field(default_factory=list)
    """Trajectories those patches were analysed from (sorted, unique)."""
    support: int | None = None
    """Number of leaf patches supporting the line."""
    level: int | None = None
    group: str | None = None


def _parse_porcelain(out: str) -> list[tuple[str, str]]:
    """``(commit, text)`` per final line from ``git blame --porcelain`` output."""
    rows: list[tuple[str, str]] = []
    current = ""
    for line in out.split("\n"):
        if line.startswith("\t"):
            rows.append((current, line[1:]))
            continue
        head = line.split(" ", 1)[0]
        if len(head) == 40 and all(c in "0123456789abcdef" for c in head):
            current = head
    return rows


def blame_file(repo: SkillRepo, path: str, ref: str = "HEAD") -> list[LineProvenance]:
    """Provenance of every line of ``path`` (repository-relative) at ``ref``."""
    commit = repo.rev(ref)
    if repo.read_files([(commit, path)])[0] is None:
        raise RepoError(f"{path} does not exist at {ref}")
    out = repo.git.run(["blame", "--porcelain", commit, "--", path]).stdout
    rows = _parse_porcelain(out.decode("utf-8", "replace"))
    commits = sorted({c for c, _ in rows})
    info = dict(zip(commits, repo.messages(commits), strict=True))
    trailers = {c: parse_trailers(m) for c, m in info.items()}
    # Trajectories of the leaf patches, read from the patch commits of each run.
    wanted = sorted(
        {
            (t.run, p)
            for t in trailers.values()
            if t is not None
            for p in ([t.patch] if t.kind == "patch" and t.patch else t.sources)
        }
    )
    patch_msgs = repo.git.read_objects([f"{REF_ROOT}/{r}/patch/{p}" for r, p in wanted])
    trajectory: dict[tuple[str, str], str] = {}
    for key, raw in zip(wanted, patch_msgs, strict=True):
        if raw is None or b"\n\n" not in raw:
            continue
        t = parse_trailers(raw.split(b"\n\n", 1)[1].decode("utf-8", "replace"))
        if t is not None and t.trajectory:
            trajectory[key] = t.trajectory
    records = []
    for number, (sha, text) in enumerate(rows, start=1):
        t = trailers[sha]
        record = LineProvenance(
            file=path, line=number, text=text, commit=sha, subject=subject_of(info[sha])
        )
        if t is not None:
            patches = [t.patch] if t.kind == "patch" and t.patch else list(t.sources)
            record = record.model_copy(
                update={
                    "run": t.run,
                    "kind": t.kind,
                    "patches": patches,
                    "trajectories": sorted(
                        {trajectory[(t.run, p)] for p in patches if (t.run, p) in trajectory}
                        | ({t.trajectory} if t.trajectory else set())
                    ),
                    "support": t.support if t.support is not None else (len(patches) or None),
                    "level": t.level,
                    "group": t.group,
                }
            )
        records.append(record)
    return records


def blame_line(repo: SkillRepo, path: str, line: int, ref: str = "HEAD") -> LineProvenance:
    """Provenance of one line (1-based) of ``path`` at ``ref``."""
    records = blame_file(repo, path, ref)
    if not 1 <= line <= len(records):
        raise RepoError(f"{path} has {len(records)} lines at {ref}; line {line} is out of range")
    return records[line - 1]
