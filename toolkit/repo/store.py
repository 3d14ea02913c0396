"""The skill store: a user's git repository plus the refs of trace2skill runs.

A run ``R`` only ever writes refs under ``refs/heads/t2s/R/``; the user's working tree, index
and current branch are never touched (objects are written with plumbing, a temporary index is
used to snapshot the skill folder). Writers of one run hold a lock file
``<git-common-dir>/trace2skill/<run>.lock`` so two processes cannot interleave.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import git
from filelock import FileLock, Timeout

from toolkit.errors import RepoError
from toolkit.repo.plumbing import ZERO_OID, Changes, CommitSpec, Git
from toolkit.repo.trailers import Trailers, format_message
from toolkit.skill import SKILL_MD, Skill, SkillError, not_a_folder_message

REF_ROOT = "refs/heads/t2s"
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def sanitize_run_id(raw: str) -> str:
    """Turn any user-given name into a valid run id (``[A-Za-z0-9._-]``, at most 64 chars).

    >>> sanitize_run_id("My run: 2026/01 (test)")
    'My-run-2026-01-test'
    """
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", raw.strip())
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"-{2,}", "-", text).strip("-._")[:64].strip("-._")
    while text.endswith(".lock"):
        text = text[: -len(".lock")].rstrip("-._")
    if not text:
        raise RepoError(f"cannot make a run id from {raw!r}: use letters, digits, '.', '_', '-'")
    return text


def check_id(value: str, what: str = "run id") -> str:
    """Return ``value`` if it is a valid run/patch/group id, else raise RepoError."""
    if not _ID_OK.match(value) or ".." in value or value.endswith(".lock"):
        raise RepoError(
            f"invalid {what} {value!r}: start with a letter or digit, then letters, digits, "
            "'.', '_' or '-' (at most 100, no '..', not ending in .lock), e.g. wtq-run.1"
        )
    return value


def run_prefix(run: str) -> str:
    """The ref prefix of a run, e.g. ``refs/heads/t2s/r1/``."""
    return f"{REF_ROOT}/{check_id(run)}/"


class SkillRepo:
    """A git repository holding skills and trace2skill runs.

    Open with :meth:`open`. All bulk writes go through :attr:`git` (plumbing, one process per
    batch); GitPython (:attr:`repo`) is used for discovery, config and HEAD.
    """

    def __init__(self, repo: git.Repo) -> None:
        self.repo = repo
        self.root = Path(repo.working_tree_dir or "").resolve()
        self.common_dir = Path(repo.common_dir).resolve()
        self.git = Git(self.root, self.common_dir)
        self._locks: dict[str, FileLock] = {}

    @classmethod
    def open(cls, path: str | Path = ".") -> SkillRepo:
        """Find the repository containing ``path``; refuse bare repositories."""
        target = Path(path)
        if not target.exists():
            raise RepoError(f"{path} does not exist")
        try:
            repo = git.Repo(target, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise RepoError(
                f"{path} is not inside a git repository (run `git init` first)"
            ) from None
        if repo.bare or repo.working_tree_dir is None:
            raise RepoError(f"{path} is a bare repository: use a clone with a working tree")
        return cls(repo)

    # ------------------------------------------------------------------ locking

    @contextmanager
    def run_lock(self, run: str) -> Iterator[None]:
        """Hold the run's lock file; a second process gets a clear RepoError at once."""
        check_id(run)
        lock = self._locks.get(run)
        if lock is None:
            path = self.common_dir / "trace2skill" / f"{run}.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = self._locks[run] = FileLock(path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RepoError(
                f"run {run!r} is being written by another process (lock {lock.lock_file}); "
                "wait for it to finish"
            ) from None
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------------ refs

    def run_refs(self, run: str) -> dict[str, str]:
        """Short ref name (``t2s/R/...``) -> commit id for every ref of ``run``."""
        prefix = run_prefix(run)
        return {name[len("refs/heads/") :]: oid for name, oid in self.git.refs(prefix).items()}

    def runs(self) -> list[str]:
        """Ids of every run with refs in this repository, sorted."""
        names = self.git.refs(REF_ROOT + "/")
        return sorted({name[len(REF_ROOT) + 1 :].split("/", 1)[0] for name in names})

    def write(
        self,
        run: str,
        commits: Sequence[tuple[str, CommitSpec]],
        *,
        replace: bool = False,
    ) -> list[str]:
        """Write ``(ref, spec)`` commits in one batch and then move their refs atomically.

        ``ref`` is a short name under the run (``patch/p1`` -> ``refs/heads/t2s/<run>/patch/p1``)
        or "" for a commit that gets no ref. A ref that already points at the same commit is
        left alone (re-running is idempotent); one pointing elsewhere is an error unless
        ``replace``. Returns the commit ids in input order.
        """
        with self.run_lock(run):
            oids = self.git.write_commits([spec for _, spec in commits])
            self._move_refs(
                run, {ref: oid for (ref, _), oid in zip(commits, oids, strict=True) if ref}, replace
            )
        return oids

    def _move_refs(self, run: str, targets: Mapping[str, str], replace: bool) -> None:
        prefix = run_prefix(run)
        existing = self.git.refs(prefix)
        commands = []
        for short, oid in targets.items():
            for part in short.split("/"):
                check_id(part, "ref name part")
            full = prefix + short
            old = existing.get(full)
            if old == oid:
                continue
            if old is not None and not replace:
                raise RepoError(
                    f"{full[len('refs/heads/') :]} already exists at {old[:12]} "
                    "(a different commit); use a new run id or replace it"
                )
            commands.append(f"update {full} {oid} {old or ZERO_OID}")
        self.git.update_refs(commands)

    def set_refs(self, run: str, targets: Mapping[str, str], *, replace: bool = False) -> None:
        """Point short refs of ``run`` at existing commits in one transaction."""
        with self.run_lock(run):
            self._move_refs(run, targets, replace)

    def delete_run(self, run: str) -> list[str]:
        """Delete every ref of ``run`` in one transaction; return the deleted short names."""
        with self.run_lock(run):
            refs = self.git.refs(run_prefix(run))
            if not refs:
                raise RepoError(f"no run {run!r} in {self.root}")
            self.git.update_refs([f"delete {name} {oid}" for name, oid in refs.items()])
        return sorted(name[len("refs/heads/") :] for name in refs)

    # ------------------------------------------------------------------ reading

    def rev(self, spec: str) -> str:
        """Resolve a revision to a commit id (RepoError if unknown)."""
        oid = self.git.resolve([f"{spec}^{{commit}}"])[0]
        if oid is None:
            hint = ""
            parts = spec.split("/")
            if len(parts) >= 3 and parts[0] == "t2s":
                # A run folder that came without its repository (a clone, an artifact).
                hint = (
                    f"; if run {parts[1]!r} came as a folder, import its refs first: "
                    f"trace2skill bundle import <runs>/{parts[1]}/refs.bundle"
                )
            raise RepoError(f"unknown revision {spec!r}{hint}")
        return oid

    def tree_of(self, commits: Sequence[str]) -> list[str]:
        """Tree ids of many commits in one process."""
        trees = self.git.resolve([f"{c}^{{tree}}" for c in commits])
        missing = [c for c, t in zip(commits, trees, strict=True) if t is None]
        if missing:
            raise RepoError(f"unknown commit {missing[0]!r}")
        return [t for t in trees if t is not None]

    def read_files(self, items: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """Contents of ``(revision, path)`` pairs (None where absent), one process."""
        return self.git.read_objects([f"{rev}:{path}" for rev, path in items])

    def load_skill(self, rev: str, path: str) -> Skill:
        """The skill folder ``path`` (from the repository root) as committed in ``rev``.

        Its version id (:func:`toolkit.trajectory.skill_commit`) is the folder's git tree id,
        so it equals that of the same folder on disk when nothing changed.

        Raises:
            RepoError: unknown revision, or no folder ``path`` in it.
            SkillError: the folder has no SKILL.md, or one of its markdown files is not UTF-8.
        """
        commit = self.rev(rev)
        rel = PurePosixPath(path.strip("/") or ".").as_posix()
        spec = commit if rel == "." else f"{commit}:{rel}"
        listing = self.git.run(["ls-tree", "-r", "-z", spec], ok_codes=(0, 128))
        if listing.returncode:
            kind = self.git.run(["cat-file", "-t", spec], ok_codes=(0, 128)).stdout.strip()
            if kind == b"blob":  # often the skill's SKILL.md, given for its folder
                name, parent = PurePosixPath(rel).name, PurePosixPath(rel).parent.as_posix()
                folder = f"{rev}:{parent}" if name == SKILL_MD else None
                raise RepoError(not_a_folder_message(f"{rev}:{rel}", folder))
            raise RepoError(f"{rev} has no folder {rel!r}")
        entries: list[tuple[bytes, str, str]] = []
        for item in listing.stdout.split(b"\0"):
            if not item:
                continue
            meta, name = item.split(b"\t", 1)
            mode, kind, oid = meta.split()
            if kind == b"blob" and mode != b"120000":  # submodules and symlinks are skipped
                entries.append((mode, oid.decode(), name.decode("utf-8", "surrogateescape")))
        if SKILL_MD not in {name for _, _, name in entries}:
            raise SkillError(f"{rev}:{rel} has no SKILL.md (a skill folder must contain SKILL.md)")
        blobs = self.git.read_objects([oid for _, oid, _ in entries])
        return Skill.from_files(
            PurePosixPath(rel).name if rel != "." else self.root.name,
            {name: data or b"" for (_, _, name), data in zip(entries, blobs, strict=True)},
            executables=[name for mode, _, name in entries if mode == b"100755"],
        )

    def messages(self, commits: Sequence[str]) -> list[str]:
        """Full commit messages of many commits in one process."""
        raws = self.git.read_objects(list(commits))
        out = []
        for commit, raw in zip(commits, raws, strict=True):
            if raw is None:
                raise RepoError(f"unknown commit {commit!r}")
            out.append(
                raw.split(b"\n\n", 1)[1].decode("utf-8", "replace") if b"\n\n" in raw else ""
            )
        return out

    def relpath(self, path: str | Path) -> str:
        """``path`` (absolute, or relative to the cwd) as a POSIX path relative to the root."""
        absolute = Path(path).resolve()
        try:
            rel = absolute.relative_to(self.root)
        except ValueError:
            raise RepoError(f"{path} is outside the repository {self.root}") from None
        return rel.as_posix() if str(rel) != "." else ""

    # ------------------------------------------------------------------ base snapshot

    def head_commit(self) -> str:
        """The user's HEAD commit; RepoError on a detached HEAD or a repository without commits."""
        if self.repo.head.is_detached:
            raise RepoError("HEAD is detached: check out a branch before snapshotting a skill")
        oid = self.git.resolve(["HEAD^{commit}"])[0]
        if oid is None:
            raise RepoError("the repository has no commits yet: commit the skill first")
        return oid

    def commit_time(self, rev: str) -> int:
        """Committer date (Unix seconds) of a revision."""
        return int(self.git.out("log", "-1", "--format=%ct", self.rev(rev)))

    def close(self) -> None:
        """Stop GitPython's helper processes, if any were started."""
        self.repo.close()

    def snapshot_base(
        self,
        run: str,
        skill_dir: str | Path,
        *,
        timestamp: int,
        allow_dirty: bool = False,
        changes: Changes | None = None,
        subject: str | None = None,
    ) -> str:
        """Commit S0 as ``t2s/<run>/base``: the user's HEAD tree with the skill folder as on disk.

        The parent is the user's HEAD commit. ``changes`` (repo-relative paths) are applied on
        top, e.g. an LLM-drafted skill for Creation mode. Refuses a detached HEAD, a repository
        without commits, an existing run, and uncommitted changes in the skill folder (unless
        ``allow_dirty``). Returns the base commit id.
        """
        head, rel = self.check_snapshot(run, skill_dir, allow_dirty=allow_dirty)
        with self.run_lock(run):
            if self.run_refs(run):
                raise RepoError(f"run {run!r} already exists: pick another id or delete it")
            tree = self._tree_with_folder(head, rel)
            message = format_message(
                subject or f"trace2skill: base of run {run}", Trailers(run=run, kind="base")
            )
            spec = CommitSpec(
                parents=[head],
                message=message,
                timestamp=timestamp,
                tree=tree,
                changes=dict(changes or {}),
            )
            return self.write(run, [("base", spec)])[0]

    def check_snapshot(
        self, run: str, skill_dir: str | Path, *, allow_dirty: bool = False
    ) -> tuple[str, str]:
        """The checks :meth:`snapshot_base` makes before it writes (also for an up-front
        check that writes nothing); returns (HEAD commit, the skill folder repo-relative).

        Raises:
            RepoError: a bad run id, no HEAD commit, no such folder, uncommitted changes in
                it (unless ``allow_dirty``), or refs of ``run`` that exist already.
        """
        check_id(run)
        head = self.head_commit()
        rel = self.relpath(skill_dir)
        if not (self.root / rel).is_dir():
            raise RepoError(f"{skill_dir} is not a directory")
        status = self.git.out(
            "--no-optional-locks",
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--",
            rel or ".",
        )
        if status and not allow_dirty:
            first = status.splitlines()[0]
            raise RepoError(
                f"{rel or '.'} has uncommitted changes ({first.strip()}...): commit them "
                "or pass --allow-dirty"
            )
        if self.run_refs(run):
            raise RepoError(f"run {run!r} already exists: pick another id or delete it")
        return head, rel

    def check_new_folder(self, run: str, skill_dir: str | Path) -> tuple[str, str]:
        """The checks :meth:`snapshot_draft` makes before it writes: (HEAD commit, the new
        skill folder repo-relative).

        Raises:
            RepoError: a bad run id, no HEAD commit, a folder outside the repository or at
                its root, one that exists already (on disk or in HEAD), or refs of ``run``.
        """
        check_id(run)
        head = self.head_commit()
        rel = self.relpath(skill_dir)
        if not rel:
            raise RepoError(f"{skill_dir} is the repository's root: a new skill needs its folder")
        if (self.root / rel).exists() or self.git.resolve([f"{head}:{rel}"])[0] is not None:
            raise RepoError(
                f"{rel} exists already: evolve it as it is (leave out --create), or choose "
                "a new folder for the skill to create"
            )
        if self.run_refs(run):
            raise RepoError(f"run {run!r} already exists: pick another id or delete it")
        return head, rel

    def snapshot_draft(
        self,
        run: str,
        skill_dir: str | Path,
        files: Mapping[str, bytes],
        *,
        timestamp: int,
        subject: str | None = None,
        body: str = "",
        model: str | None = None,
    ) -> str:
        """Commit a new skill folder (Creation: the LLM draft of S0) as ``t2s/<run>/base``: the
        user's HEAD tree plus ``files`` (paths inside the folder), parent HEAD. Nothing on
        disk is read or written. Returns the base commit id.

        Raises:
            RepoError: as :meth:`check_new_folder`.
        """
        head, rel = self.check_new_folder(run, skill_dir)
        with self.run_lock(run):
            if self.run_refs(run):
                raise RepoError(f"run {run!r} already exists: pick another id or delete it")
            message = format_message(
                subject or f"trace2skill: base of run {run} (a new skill, drafted)",
                Trailers(run=run, kind="base", model=model),
                body,
            )
            spec = CommitSpec(
                parents=[head],
                message=message,
                timestamp=timestamp,
                changes={f"{rel}/{path}": data for path, data in files.items()},
            )
            return self.write(run, [("base", spec)])[0]

    def _tree_with_folder(self, head: str, rel: str) -> str:
        """HEAD's tree with ``rel`` as on disk, via a temporary index (the user's is untouched)."""
        fd, index = tempfile.mkstemp(prefix="index-", dir=self.git._scratch_dir())
        os.close(fd)
        os.unlink(index)  # git wants to create it itself
        env = {"GIT_INDEX_FILE": index}
        try:
            self.git.run(["read-tree", head], env=env)
            self.git.run(["add", "--all", "--", rel or "."], env=env)
            return self.git.run(["write-tree"], env=env).stdout.decode().strip()
        except subprocess.SubprocessError as exc:  # pragma: no cover - defensive
            raise RepoError(f"could not snapshot {rel}: {exc}") from exc
        finally:
            Path(index).unlink(missing_ok=True)


def open_run_repo(
    explicit: str | Path | None,
    recorded: str | Path | None,
    run_ids: Sequence[str],
    here: str | Path = ".",
) -> SkillRepo:
    """The skill repository of a run: ``explicit`` (``--repo``); else the one at ``here`` when
    it holds refs of one of ``run_ids`` (a clone that imported the run's bundle: the user's
    copy wins over a path the run recorded on some machine); else the recorded repository
    when it exists here; else the one at ``here``.

    Raises:
        RepoError: the chosen path is no usable repository.
    """
    if explicit:
        return SkillRepo.open(explicit)
    try:
        current: SkillRepo | None = SkillRepo.open(here)
    except RepoError:
        current = None
    if current is not None and set(run_ids) & set(current.runs()):
        return current
    if recorded and Path(recorded).is_dir():
        if current is not None:
            current.close()
        return SkillRepo.open(recorded)
    return current if current is not None else SkillRepo.open(here)
