"""Git plumbing processes: one process per batch, never the user's index or working tree.

Every bulk operation of the store is a single git process fed on stdin: ``fast-import`` writes
many commits, ``cat-file --batch`` reads many objects, ``merge-tree --stdin`` merges many pairs
and ``update-ref --stdin`` moves many refs in one transaction. Refs are only moved by
:meth:`Git.update_refs`, after ``fast-import`` has finished writing every object.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import RepoError

Changes = Mapping[str, bytes | None]
"""Files to write (bytes) or delete (None), by repository-relative POSIX path."""

ZERO_OID = "0" * 40


@dataclass(frozen=True)
class CommitSpec:
    """One commit for :meth:`Git.write_commits`.

    ``parents`` are commit ids, or ints naming an earlier spec of the same batch (its index),
    so a chain is written in one process. The tree is ``tree`` if given, else the first
    parent's tree, with ``changes`` applied on top.
    """

    parents: Sequence[str | int]
    message: str
    timestamp: int
    changes: Changes = field(default_factory=dict)
    tree: str | None = None


@dataclass(frozen=True)
class MergeResult:
    """The outcome of one ``merge-tree`` merge of two commits."""

    clean: bool
    tree: str
    conflicted: tuple[str, ...]
    """Paths with higher-order stages (sorted, unique)."""


AUTHOR = "trace2skill <trace2skill@localhost>"


def quote_path(path: str) -> str:
    """C-quote a path for fast-import (always quoted, so any byte is safe)."""
    out = ['"']
    for byte in path.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    out.append('"')
    return "".join(out)


#: Return codes of a git killed by SIGINT or SIGTERM: the user stopped the work.
_STOPPED = (-signal.SIGINT, -signal.SIGTERM)

#: A stderr line that says what went wrong (git's advice lines around them say nothing).
_ERROR_LINE = re.compile(r"^(remote: )?(fatal|error): ")
#: Longest detail kept from stderr: one readable line.
_DETAIL_CHARS = 400


def error_detail(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The meaningful part of a failed git's stderr, on one line: its ``fatal:``/``error:``
    lines joined (git fetch ends with "and the repository exists.", an advice line), else the
    last line."""
    lines = [line.strip() for line in proc.stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    errors = list(dict.fromkeys(line for line in lines if _ERROR_LINE.match(line)))
    detail = "; ".join(errors) if errors else (lines[-1] if lines else "")
    if len(detail) > _DETAIL_CHARS:
        detail = detail[: _DETAIL_CHARS - 3] + "..."
    return detail or f"exit status {proc.returncode}"


def git_command(args: Sequence[str]) -> str:
    """The git command ``args`` run (``merge-tree`` of ``-c merge.conflictStyle=diff3
    merge-tree ...``): the first word that is neither an option nor the value of ``-c``/``-C``."""
    words = iter(args)
    for word in words:
        if word in ("-c", "-C"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


class Git:
    """Runs git commands in one repository, raising :class:`RepoError` on failure."""

    def __init__(self, root: Path, git_dir: Path) -> None:
        self.root = root
        self.git_dir = git_dir
        self._env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        # Never let a user's GIT_INDEX_FILE or GIT_DIR redirect plumbing elsewhere.
        for var in ("GIT_INDEX_FILE", "GIT_DIR", "GIT_WORK_TREE"):
            self._env.pop(var, None)

    def run(
        self,
        args: Sequence[str],
        data: bytes | None = None,
        env: Mapping[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``git *args`` with ``data`` on stdin; raise RepoError on other exit codes,
        KeyboardInterrupt when a SIGINT or SIGTERM stopped git (Ctrl-C reaches it too)."""
        proc = subprocess.run(
            ["git", *args],
            cwd=self.root,
            input=data if data is not None else b"",
            capture_output=True,
            env={**self._env, **(env or {})},
            check=False,
        )
        if proc.returncode in _STOPPED:
            # Ctrl-C (or a kill of the process group, as `timeout` sends) reaches git too:
            # the user stopped the work, so it stops as interrupted (resumable), not as
            # "git failed: exit status -2" recorded as a failed stage.
            raise KeyboardInterrupt
        if proc.returncode not in ok_codes:
            raise RepoError(f"git {git_command(args)} failed: {error_detail(proc)}")
        return proc

    def out(self, *args: str, data: bytes | None = None) -> str:
        """Run a command and return its stdout, decoded and stripped."""
        return self.run(args, data).stdout.decode("utf-8", "replace").strip()

    # ------------------------------------------------------------------ objects

    def read_objects(self, specs: Sequence[str]) -> list[bytes | None]:
        """Contents of many objects (``rev:path`` or ids) in one ``cat-file --batch``."""
        if not specs:
            return []
        data = "".join(s + "\n" for s in specs).encode()
        out = self.run(["cat-file", "--batch"], data).stdout
        result: list[bytes | None] = []
        pos = 0
        for _ in specs:
            nl = out.index(b"\n", pos)
            header = out[pos:nl].split()
            if len(header) != 3:  # "<spec> missing" / "ambiguous"
                result.append(None)
                pos = nl + 1
                continue
            size = int(header[2])
            result.append(out[nl + 1 : nl + 1 + size])
            pos = nl + 1 + size + 1
        return result

    def resolve(self, specs: Sequence[str]) -> list[str | None]:
        """Object ids of many revisions (``c^{tree}``, ``rev:path``) in one process."""
        if not specs:
            return []
        data = "".join(s + "\n" for s in specs).encode()
        out = self.run(["cat-file", "--batch-check=%(objectname)"], data).stdout.decode()
        return [None if line.endswith("missing") else line for line in out.splitlines()]

    def write_commits(self, commits: Sequence[CommitSpec]) -> list[str]:
        """Write commits (and their blobs and trees) in one ``git fast-import``; return ids.

        No ref is moved: every commit is made on a scratch branch that is reset before the
        end, so fast-import writes no ref at all. Ids are content hashes of the inputs.
        """
        if not commits:
            return []
        scratch = f"refs/trace2skill-scratch/{uuid.uuid4().hex}"
        parts: list[bytes] = [b"feature done\n"]
        for i, spec in enumerate(commits, start=1):
            msg = spec.message.encode()
            lines = [
                f"commit {scratch}",
                f"mark :{i}",
                f"author {AUTHOR} {spec.timestamp} +0000",
                f"committer {AUTHOR} {spec.timestamp} +0000",
                f"data {len(msg)}",
            ]
            parts.append(("\n".join(lines) + "\n").encode() + msg + b"\n")
            head: list[str] = []
            for n, parent in enumerate(spec.parents):
                if isinstance(parent, int):
                    if not 0 <= parent < i - 1:
                        raise ValueError(f"commit {i - 1}: parent index {parent} is not earlier")
                    ref = f":{parent + 1}"
                else:
                    ref = parent
                head.append(f"{'from' if n == 0 else 'merge'} {ref}")
            if spec.tree is not None:
                head.append(f'M 040000 {spec.tree} ""')
            parts.append(("\n".join(head) + "\n").encode() if head else b"")
            for path in sorted(spec.changes):
                content = spec.changes[path]
                if content is None:
                    parts.append(f"D {quote_path(path)}\n".encode())
                else:
                    parts.append(
                        f"M 100644 inline {quote_path(path)}\ndata {len(content)}\n".encode()
                        + content
                        + b"\n"
                    )
            parts.append(b"\n")
        parts.append(f"reset {scratch}\n\ndone\n".encode())
        fd, marks_path = tempfile.mkstemp(prefix="marks-", dir=self._scratch_dir())
        os.close(fd)
        crashes = set(self.git_dir.glob("fast_import_crash_*"))
        try:
            self.run(
                ["fast-import", "--quiet", "--done", f"--export-marks={marks_path}"],
                b"".join(parts),
            )
            lines = Path(marks_path).read_text().splitlines()
        except RepoError:
            # fast-import leaves a crash report in the git dir; the error says enough
            for report in set(self.git_dir.glob("fast_import_crash_*")) - crashes:
                report.unlink(missing_ok=True)
            raise
        finally:
            Path(marks_path).unlink(missing_ok=True)
        marks = dict(line.split() for line in lines if line)
        return [marks[f":{i}"] for i in range(1, len(commits) + 1)]

    def _scratch_dir(self) -> Path:
        path = self.git_dir / "trace2skill"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------ merges

    def merge_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[MergeResult]:
        """Three-way merge many commit pairs in one ``merge-tree --write-tree --stdin``.

        Conflicted files in the result trees carry diff3-style markers (with the base text).
        """
        if not pairs:
            return []
        data = "".join(f"{a} {b}\n" for a, b in pairs).encode()
        args = ["-c", "merge.conflictStyle=diff3", "merge-tree", "--write-tree", "--stdin"]
        out = self.run([*args, "-z", "--no-messages"], data).stdout
        tokens = out.split(b"\0")
        results: list[MergeResult] = []
        i = 0
        for a, b in pairs:
            status = tokens[i].decode()
            if status not in ("0", "1"):
                raise RepoError(f"git merge-tree could not merge {a[:12]} and {b[:12]}")
            tree = tokens[i + 1].decode()
            i += 2
            paths: set[str] = set()
            while tokens[i]:
                paths.add(tokens[i].split(b"\t", 1)[1].decode("utf-8", "replace"))
                i += 1
            i += 1
            results.append(MergeResult(status == "1", tree, tuple(sorted(paths))))
        return results

    # ------------------------------------------------------------------ refs

    def refs(self, prefix: str) -> dict[str, str]:
        """Full ref name -> commit id for every ref under ``prefix`` (e.g. refs/heads/t2s/r/)."""
        out = self.out("for-each-ref", "--format=%(refname) %(objectname)", prefix)
        pairs = (line.split(" ", 1) for line in out.splitlines() if line)
        return {name: oid for name, oid in pairs}

    def update_refs(self, commands: Sequence[str]) -> None:
        """Apply ``update-ref --stdin`` commands as one all-or-nothing transaction."""
        if not commands:
            return
        data = ("start\n" + "".join(c + "\n" for c in commands) + "prepare\ncommit\n").encode()
        self.run(["update-ref", "--stdin"], data)
