"""Benchmark the git skill store against bare git commands doing the same work.

Workload: N synthetic patches (1-3 line edits each on a 300-line SKILL.md, seeded RNG), one
commit per patch on its branch, then consolidated level by level in groups of 8 with git-only
merges until one commit remains. Conflicts are detected pairwise and resolved by a
deterministic stand-in: every conflicted file takes the version of the first child in the group
that changed it ("ours"); conflict-free groups take git's textual union.

Two implementations run on fresh copies of the same repository:
- ``raw_git``: a straightforward script of bare git commands (fast-import for the commits,
  ``merge-tree --stdin`` for the merges, ``cat-file --batch`` to read conflicts,
  ``commit-tree`` for the group commits, one ``update-ref --stdin`` at the end).
- ``toolkit``: the same work through ``toolkit.repo``.

Usage: ``python benchmarks/git_store.py [--patches N] [--seed S] [--repeat K]``.
The last line of output is one JSON object:
``{"patches": N, "toolkit_s": ..., "raw_git_s": ..., "ratio": ...}``.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SKILL_PATH = "skills/bench/SKILL.md"
GROUP = 8
RUN_TS = 1_767_225_600  # 2026-01-01T00:00:00Z: commit dates come from the run, not now()
IDENT = "trace2skill <trace2skill@localhost>"


# ---------------------------------------------------------------- synthetic workload


def base_lines() -> list[str]:
    lines = [
        "---",
        "name: bench",
        "description: Synthetic skill for the git store benchmark.",
        "---",
    ]
    for i in range(len(lines), 300):
        lines.append(f"Line {i}: keep the answer format exact and check units before replying.")
    return lines


def make_patches(n: int, seed: int) -> list[tuple[str, bytes]]:
    """Return ``(patch_id, new SKILL.md bytes)`` for ``n`` patches of 1-3 line edits."""
    rng = random.Random(seed)
    base = base_lines()
    patches = []
    for p in range(n):
        lines = list(base)
        for e in range(rng.randint(1, 3)):
            at = rng.randrange(5, len(lines))
            text = f"- lesson p{p:05d}.{e}: verify step {rng.randrange(1000)} before answering."
            if rng.random() < 0.5:
                lines.insert(at, text)
            else:
                lines[at] = text
        patches.append((f"p{p:05d}", ("\n".join(lines) + "\n").encode()))
    return patches


def make_repo(path: Path) -> None:
    """A user repository on branch main with the skill committed."""

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)

    path.mkdir(parents=True)
    git("init", "-q", "-b", "main")
    git("config", "user.name", "bench")
    git("config", "user.email", "bench@localhost")
    (path / "skills" / "bench").mkdir(parents=True)
    (path / SKILL_PATH).write_text("\n".join(base_lines()) + "\n")
    (path / "README.md").write_text("bench repo\n")
    git("add", ".")
    git("commit", "-q", "-m", "initial skill")


# ---------------------------------------------------------------- raw git baseline


def _git(cwd: Path, args: list[str], data: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {proc.stderr.decode()[:500]}")
    return proc.stdout


def _fast_import(cwd: Path, stream: bytes) -> dict[str, str]:
    with tempfile.NamedTemporaryFile(dir=cwd / ".git", delete=False) as marks:
        marks_path = marks.name
    _git(cwd, ["fast-import", "--quiet", "--done", f"--export-marks={marks_path}"], stream)
    out = {}
    for line in Path(marks_path).read_text().splitlines():
        mark, sha = line.split()
        out[mark] = sha
    Path(marks_path).unlink()
    return out


def _commit_block(mark: int, msg: str, parents: list[str], body: bytes) -> bytes:
    head = [
        "commit refs/raw-tmp",
        f"mark :{mark}",
        f"author {IDENT} {RUN_TS} +0000",
        f"committer {IDENT} {RUN_TS} +0000",
        f"data {len(msg.encode())}",
        msg,
        f"from {parents[0]}",
    ]
    head += [f"merge {p}" for p in parents[1:]]
    return ("\n".join(head) + "\n").encode() + body


def _merge_many(cwd: Path, pairs: list[tuple[str, str]]) -> list[tuple[bool, str, set[str]]]:
    """``(clean, tree, conflicted paths)`` per pair, from one ``merge-tree --stdin``."""
    if not pairs:
        return []
    data = "".join(f"{a} {b}\n" for a, b in pairs).encode()
    out = _git(
        cwd,
        [
            "-c",
            "merge.conflictStyle=diff3",
            "merge-tree",
            "--stdin",
            "-z",
            "--write-tree",
            "--no-messages",
        ],
        data,
    )
    tokens = out.split(b"\0")
    results, i = [], 0
    for _ in pairs:
        status, tree = tokens[i].decode(), tokens[i + 1].decode()
        i += 2
        paths = set()
        while tokens[i]:
            paths.add(tokens[i].split(b"\t", 1)[1].decode())
            i += 1
        i += 1
        results.append((status == "1", tree, paths))
    return results


def _cat_batch(cwd: Path, specs: list[str]) -> list[bytes | None]:
    if not specs:
        return []
    out = _git(cwd, ["cat-file", "--batch"], "".join(s + "\n" for s in specs).encode())
    res, pos = [], 0
    for _ in specs:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split()
        if header[-1] == b"missing":
            res.append(None)
            pos = nl + 1
            continue
        size = int(header[2])
        res.append(out[nl + 1 : nl + 1 + size])
        pos = nl + 1 + size + 1
    return res


def _hunks(text: bytes) -> int:
    """Count conflict hunks (the baseline parses markers as the toolkit does)."""
    return sum(1 for line in text.split(b"\n") if line.startswith(b"<<<<<<< "))


def raw_git(repo: Path, patches: list[tuple[str, bytes]]) -> tuple[str, int]:
    """Do the whole workload with bare git commands; return (final commit, conflicts)."""
    base = _git(repo, ["rev-parse", "HEAD"]).decode().strip()
    refs: dict[str, str] = {}
    # 1. patch commits: one fast-import
    stream = [b"feature done\n"]
    for m, (pid, content) in enumerate(patches, start=1):
        body = f"M 100644 inline {SKILL_PATH}\ndata {len(content)}\n".encode() + content + b"\n"
        stream.append(_commit_block(m, f"patch {pid}\n", [base], body))
    stream.append(b"reset refs/raw-tmp\n\ndone\n")
    marks = _fast_import(repo, b"".join(stream))
    children = [marks[f":{m}"] for m in range(1, len(patches) + 1)]
    for (pid, _), sha in zip(patches, children, strict=True):
        refs[f"refs/heads/raw/patch/{pid}"] = sha
    level, conflicts = 0, 0
    while len(children) > 1:
        level += 1
        groups = [children[i : i + GROUP] for i in range(0, len(children), GROUP)]
        # 2a. pairwise conflict detection
        pairs = [(g[a], g[b]) for g in groups for a in range(len(g)) for b in range(a + 1, len(g))]
        pair_results = _merge_many(repo, pairs)
        specs = [f"{tree}:{p}" for ok, tree, paths in pair_results if not ok for p in sorted(paths)]
        conflicts += sum(_hunks(t or b"") for t in _cat_batch(repo, specs))
        group_of = [
            gi for gi, g in enumerate(groups) for a in range(len(g)) for b in range(a + 1, len(g))
        ]
        bad: list[set[str]] = [set() for _ in groups]
        for gi, (_ok, _tree, paths) in zip(group_of, pair_results, strict=True):
            bad[gi] |= paths
        # 2b. union fold, round by round, intermediates written with fast-import
        current = [list(g) for g in groups]
        while any(len(c) > 1 for c in current):
            jobs = [(gi, k) for gi, c in enumerate(current) for k in range(0, len(c) - 1, 2)]
            res = _merge_many(repo, [(current[gi][k], current[gi][k + 1]) for gi, k in jobs])
            stream = [b"feature done\n"]
            for mark, ((gi, k), (_ok, tree, paths)) in enumerate(zip(jobs, res, strict=True), 1):
                bad[gi] |= paths
                parents = [current[gi][k], current[gi][k + 1]]
                stream.append(
                    _commit_block(mark, "fold\n", parents, f'M 040000 {tree} ""\n\n'.encode())
                )
            stream.append(b"reset refs/raw-tmp\n\ndone\n")
            marks = _fast_import(repo, b"".join(stream))
            job_mark = {job: i for i, job in enumerate(jobs, start=1)}
            nxt: list[list[str]] = [[] for _ in current]
            for gi, c in enumerate(current):
                for k in range(0, len(c), 2):
                    m = job_mark.get((gi, k))
                    nxt[gi].append(marks[f":{m}"] if m else c[k])
            current = nxt
        # 2c. resolution: conflicted files take the first changing child's blob
        checks = []
        for gi, g in enumerate(groups):
            for p in sorted(bad[gi]):
                checks += [f"{base}:{p}"] + [f"{c}:{p}" for c in g]
        check_out = (
            _git(repo, ["cat-file", "--batch-check"], "".join(s + "\n" for s in checks).encode())
            if checks
            else b""
        )
        oids = [line.split()[0].decode() for line in check_out.splitlines()]
        stream, mark, fixes = [b"feature done\n"], 0, {}
        pos = 0
        for gi, g in enumerate(groups):
            if not bad[gi]:
                continue
            body = b""
            for p in sorted(bad[gi]):
                base_oid, child_oids = oids[pos], oids[pos + 1 : pos + 1 + len(g)]
                pos += 1 + len(g)
                pick = next((o for o in child_oids if o != base_oid), child_oids[0])
                body += f"M 100644 {pick} {p}\n".encode()
            mark += 1
            fixes[gi] = mark
            stream.append(_commit_block(mark, "resolve\n", [current[gi][0]], body + b"\n"))
        stream.append(b"reset refs/raw-tmp\n\ndone\n")
        marks = _fast_import(repo, b"".join(stream)) if fixes else {}
        # 2d. one octopus commit per group with commit-tree
        nxt_children = []
        for gi, g in enumerate(groups):
            tree_ish = marks[f":{fixes[gi]}"] if gi in fixes else current[gi][0]
            args = ["commit-tree", f"{tree_ish}^{{tree}}", "-m", f"L{level} group {gi}"]
            for c in g:
                args += ["-p", c]
            sha = _git(repo, args).decode().strip()
            refs[f"refs/heads/raw/L{level}/g{gi:04d}"] = sha
            nxt_children.append(sha)
        children = nxt_children
    refs["refs/heads/raw/result"] = children[0]
    _git(
        repo,
        ["update-ref", "--stdin"],
        "".join(f"create {r} {s}\n" for r, s in refs.items()).encode(),
    )
    return children[0], conflicts


# ---------------------------------------------------------------- toolkit


def toolkit(repo_path: Path, patches: list[tuple[str, bytes]]) -> str:
    """Do the whole workload through ``toolkit.repo``; return the final commit."""
    from toolkit.repo import (
        GroupMerge,
        PatchCommit,
        Resolution,
        SkillRepo,
        consolidate,
        write_patches,
    )

    store = SkillRepo.open(repo_path)
    base = store.snapshot_base("bench", repo_path / "skills" / "bench", timestamp=RUN_TS)
    commits = write_patches(
        store,
        "bench",
        [
            PatchCommit(
                patch_id=pid,
                changes={SKILL_PATH: content},
                subject=f"patch {pid}",
                trajectory=f"t-{pid}",
                outcome="fail",
                analyst="bench",
                model="none",
            )
            for pid, content in patches
        ],
        timestamp=RUN_TS,
    )

    def stand_in(merges: list[GroupMerge]) -> list[Resolution]:
        # conflicted files take the first child's version that differs from the base
        wanted = []
        for m in merges:
            files = sorted({c.file for c in m.conflicts if c.file} | set(m.conflicted_files))
            for f in files:
                wanted.append((m.group, f, [base, *m.children]))
        texts = iter(store.read_files([(rev, f) for _, f, revs in wanted for rev in revs]))
        fixes: dict[str, dict[str, bytes | None]] = {}
        for group, f, revs in wanted:
            versions = [next(texts) for _ in revs]
            pick = next((v for v in versions[1:] if v != versions[0]), versions[1])
            fixes.setdefault(group, {})[f] = pick
        return [Resolution(changes=fixes.get(m.group, {})) for m in merges]

    children = [commits[pid] for pid, _ in patches]
    return consolidate(
        store, "bench", children, timestamp=RUN_TS, group_size=GROUP, resolve=stand_in
    )


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat", type=int, default=1, help="Runs per side (alternating order); min is kept."
    )
    args = parser.parse_args(argv)
    patches = make_patches(args.patches, args.seed)
    raw_times: list[float] = []
    tk_times: list[float] = []
    trees: set[str] = set()
    for attempt in range(args.repeat):
        # alternate the order so a change in machine load hits both sides alike
        order = ["raw", "toolkit"] if attempt % 2 == 0 else ["toolkit", "raw"]
        for side in order:
            with tempfile.TemporaryDirectory() as tmp:
                repo = Path(tmp) / side
                make_repo(repo)
                start = time.perf_counter()
                if side == "raw":
                    final, conflicts = raw_git(repo, patches)
                else:
                    final, conflicts = toolkit(repo, patches), -1
                elapsed = time.perf_counter() - start
                tree = _git(repo, ["rev-parse", f"{final}^{{tree}}"]).decode().strip()
            (raw_times if side == "raw" else tk_times).append(elapsed)
            trees.add(tree)
            extra = f" conflict hunks={conflicts}" if conflicts >= 0 else ""
            print(f"{side}: {elapsed:.2f}s final tree={tree[:12]}{extra}", flush=True)
    if len(trees) != 1:
        print("warning: toolkit and raw git produced different final trees", file=sys.stderr)
    raw_s, tk_s = min(raw_times), min(tk_times)
    result = {
        "patches": args.patches,
        "toolkit_s": round(tk_s, 3),
        "raw_git_s": round(raw_s, 3),
        "ratio": round(tk_s / raw_s, 3),
        "same_tree": len(trees) == 1,
        "repeat": args.repeat,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
