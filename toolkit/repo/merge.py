"""Consolidation merges: conflicts between siblings, the textual union, group merge commits.

For each group of child commits (all descending from the run's base) the store

1. merges every pair of children with ``git merge-tree --write-tree --stdin`` (all pairs of
   all groups of a level in one process) and reports each conflict with its hunks;
2. folds the children into git's textual union, pairwise in rounds ((c1+c2)+(c3+c4))...,
   one ``merge-tree`` and one ``fast-import`` (for the unreferenced intermediate commits) per
   round for the whole level;
3. hands the :class:`GroupMerge` records to a resolver (the merge operator) that returns, per
   group, the files to write on top of the union, and writes one octopus merge commit per group
   (parents = the children) on ``t2s/<run>/L<k>/<group>``, with trailers naming the leaf patches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pydantic import BaseModel, Field

from toolkit.errors import RepoError
from toolkit.repo.plumbing import CommitSpec
from toolkit.repo.store import SkillRepo, check_id
from toolkit.repo.trailers import Trailers, format_message, parse_trailers


class ConflictHunk(BaseModel):
    """One conflicted region of a file, as git's diff3 markers show it."""

    line: int
    """1-based line of the ``<<<<<<<`` marker in the merged file."""
    base: str
    """The base (S0) text of the region."""
    ours: str
    """The first child's text."""
    theirs: str
    """The second child's text."""


class Conflict(BaseModel):
    """A conflict between two children of a group in one file."""

    schema_version: int = 1
    file: str
    """Repository-relative path."""
    ours: str
    """Commit id of the first child."""
    theirs: str
    """Commit id of the second child."""
    hunks: list[ConflictHunk] = Field(default_factory=list)
    """Content hunks; empty for conflicts without markers (modify/delete, binary)."""


class GroupMerge(BaseModel):
    """What git says about merging one group of children."""

    schema_version: int = 1
    group: str
    """Group name within its level (used in the ref name)."""
    children: list[str]
    """Child commit ids, in order (the merge commit's parents)."""
    union_tree: str
    """Tree of git's textual union of all children; conflicted files carry markers."""
    conflicted_files: list[str] = Field(default_factory=list)
    """Files with conflict markers (or unmergeable) in ``union_tree``: must be resolved."""
    conflicts: list[Conflict] = Field(default_factory=list)
    """Every pairwise conflict between children, with hunks."""

    @property
    def clean(self) -> bool:
        """True when the textual union needs no resolution."""
        return not self.conflicts and not self.conflicted_files


class Resolution(BaseModel):
    """A resolver's decision for one group: files to write on top of the union tree."""

    changes: dict[str, bytes | None] = Field(default_factory=dict)
    """Files written (bytes) or deleted (None) on top of ``union_tree``."""
    subject: str | None = None
    body: str = ""
    sources: list[str] | None = None
    """Leaf patch ids behind the result; None = all leaves of all children."""
    model: str | None = None
    passed_up: bool = False
    """The resolver declined the group: no commit is written and its children pass up a level."""


Resolver = Callable[[list[GroupMerge]], list[Resolution]]
"""Decides the tree of every group of a level at once (so it can batch its work)."""


def plan_groups(children: Sequence[str], size: int) -> dict[str, list[str]]:
    """Split children into consecutive groups of at most ``size``: ``{"g0001": [...], ...}``."""
    if size < 1:
        raise ValueError("group size must be >= 1")
    width = max(4, len(str(len(children) // size + 1)))
    return {
        f"g{n:0{width}d}": list(children[i : i + size])
        for n, i in enumerate(range(0, len(children), size), start=1)
    }


def parse_conflict_markers(text: str) -> list[ConflictHunk]:
    """Hunks of a file merged with ``merge.conflictStyle=diff3``."""
    hunks: list[ConflictHunk] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].startswith("<<<<<<< "):
            i += 1
            continue
        start = i
        parts: dict[str, list[str]] = {"ours": [], "base": [], "theirs": []}
        section = "ours"
        i += 1
        while i < len(lines) and not lines[i].startswith(">>>>>>> "):
            line = lines[i]
            if line.startswith("||||||| ") or line == "|||||||":
                section = "base"
            elif line == "=======":
                section = "theirs"
            else:
                parts[section].append(line)
            i += 1
        hunks.append(
            ConflictHunk(
                line=start + 1,
                base="\n".join(parts["base"]),
                ours="\n".join(parts["ours"]),
                theirs="\n".join(parts["theirs"]),
            )
        )
        i += 1
    return hunks


def analyse_groups(
    repo: SkillRepo, groups: Mapping[str, Sequence[str]], *, timestamp: int = 0
) -> list[GroupMerge]:
    """Pairwise conflicts and textual union of every group (a few git processes in all)."""
    names = list(groups)
    for name in names:
        check_id(name, "group name")
    members = [list(groups[n]) for n in names]
    if any(not m for m in members):
        raise RepoError("a merge group has no children")
    # 1. every pair of every group, one merge-tree process
    pairs = [
        (g, a, b)
        for g, m in enumerate(members)
        for a in range(len(m))
        for b in range(a + 1, len(m))
    ]
    results = repo.git.merge_pairs([(members[g][a], members[g][b]) for g, a, b in pairs])
    by_pair = {(g, a, b): r for (g, a, b), r in zip(pairs, results, strict=True)}
    conflict_specs = [
        (g, a, b, path) for (g, a, b), r in by_pair.items() if not r.clean for path in r.conflicted
    ]
    texts = repo.git.read_objects(
        [f"{by_pair[(g, a, b)].tree}:{p}" for g, a, b, p in conflict_specs]
    )
    conflicts: list[list[Conflict]] = [[] for _ in names]
    for (g, a, b, path), raw in zip(conflict_specs, texts, strict=True):
        text = raw.decode("utf-8", "replace") if raw is not None else ""
        conflicts[g].append(
            Conflict(
                file=path,
                ours=members[g][a],
                theirs=members[g][b],
                hunks=parse_conflict_markers(text),
            )
        )
    for (g, a, b), r in by_pair.items():
        if not r.clean and not r.conflicted:
            # a conflict git could not pin on a file (e.g. some directory renames)
            conflicts[g].append(Conflict(file="", ours=members[g][a], theirs=members[g][b]))
    # 2. fold into the union, in rounds; round one reuses the pairwise results
    current: list[list[str]] = [list(m) for m in members]
    trees: list[list[str | None]] = [[None] * len(m) for m in members]
    bad: list[set[str]] = [set() for _ in names]
    first_round = True
    while any(len(c) > 1 for c in current):
        jobs = [(g, k) for g, c in enumerate(current) for k in range(0, len(c) - 1, 2)]
        if first_round:
            merged = [by_pair[(g, k, k + 1)] for g, k in jobs]
        else:
            merged = repo.git.merge_pairs([(current[g][k], current[g][k + 1]) for g, k in jobs])
        first_round = False
        specs = [
            CommitSpec(
                [current[g][k], current[g][k + 1]],
                "trace2skill: union step\n",
                timestamp,
                tree=r.tree,
            )
            for (g, k), r in zip(jobs, merged, strict=True)
        ]
        oids = repo.git.write_commits(specs)
        done = {job: (oid, r) for job, oid, r in zip(jobs, oids, merged, strict=True)}
        nxt: list[list[str]] = []
        nxt_trees: list[list[str | None]] = []
        for g, c in enumerate(current):
            row, row_trees = [], []
            for k in range(0, len(c), 2):
                if (g, k) in done:
                    oid, r = done[(g, k)]
                    bad[g].update(r.conflicted)
                    if not r.clean and not r.conflicted:
                        bad[g].add("")
                    row.append(oid)
                    row_trees.append(r.tree)
                else:
                    row.append(c[k])
                    row_trees.append(trees[g][k])
            nxt.append(row)
            nxt_trees.append(row_trees)
        current, trees = nxt, nxt_trees
    singles = [g for g, t in enumerate(trees) if t[0] is None]
    for g, tree in zip(singles, repo.tree_of([current[g][0] for g in singles]), strict=True):
        trees[g][0] = tree
    return [
        GroupMerge(
            group=name,
            children=members[g],
            union_tree=str(trees[g][0]),
            conflicted_files=sorted(bad[g]),
            conflicts=conflicts[g],
        )
        for g, name in enumerate(names)
    ]


def leaf_sources(repo: SkillRepo, commits: Sequence[str]) -> list[list[str]]:
    """Leaf patch ids behind each commit, read from its trailers (patch -> itself)."""
    out = []
    for message in repo.messages(commits):
        trailers = parse_trailers(message)
        if trailers is None:
            out.append([])
        elif trailers.kind == "patch" and trailers.patch:
            out.append([trailers.patch])
        else:
            out.append(list(trailers.sources))
    return out


def write_group_commits(
    repo: SkillRepo,
    run: str,
    level: int,
    merges: Sequence[GroupMerge],
    resolutions: Sequence[Resolution],
    *,
    timestamp: int,
) -> dict[str, str]:
    """One merge commit per group on ``t2s/<run>/L<level>/<group>``; return group -> commit.

    The tree is the union tree plus the resolution's changes; every file left with conflict
    markers must be resolved. Trailers carry the leaf patches (sources) and their count.
    Groups whose resolution is ``passed_up`` get no commit (and no entry in the result).
    """
    if len(merges) != len(resolutions):
        raise RepoError("one resolution per group is required")
    all_children = [c for m in merges for c in m.children]
    leaves = iter(leaf_sources(repo, all_children))
    specs = []
    written = []
    for merge, res in zip(merges, resolutions, strict=True):
        child_leaves = [next(leaves) for _ in merge.children]
        if res.passed_up:
            continue
        written.append(merge)
        unresolved = [f for f in merge.conflicted_files if f not in res.changes]
        if unresolved:
            raise RepoError(
                f"group {merge.group} (level {level}) leaves conflicts unresolved in "
                f"{', '.join(f or '<tree>' for f in unresolved)}"
            )
        if res.sources is not None:
            sources = sorted(set(res.sources))
        else:
            sources = sorted({leaf for group in child_leaves for leaf in group})
        trailers = Trailers(
            run=run,
            kind="merge",
            level=level,
            group=merge.group,
            sources=sources,
            support=len(sources),
            model=res.model,
        )
        subject = (
            res.subject
            or f"trace2skill: L{level} {merge.group}: merge {len(merge.children)} children"
        )
        spec = CommitSpec(
            merge.children,
            format_message(subject, trailers, res.body),
            timestamp,
            changes=res.changes,
            tree=merge.union_tree,
        )
        specs.append((f"L{level}/{merge.group}", spec))
    oids = repo.write(run, specs) if specs else []
    return {m.group: oid for m, oid in zip(written, oids, strict=True)}


def union_resolver(merges: list[GroupMerge]) -> list[Resolution]:
    """The ``git`` strategy: take the textual union; refuse groups with conflicts."""
    for merge in merges:
        if not merge.clean:
            files = sorted({c.file for c in merge.conflicts} | set(merge.conflicted_files))
            raise RepoError(f"group {merge.group} has conflicts in {', '.join(files)}")
    return [Resolution() for _ in merges]


def consolidate_level(
    repo: SkillRepo,
    run: str,
    level: int,
    groups: Mapping[str, Sequence[str]],
    *,
    timestamp: int,
    resolve: Resolver = union_resolver,
) -> tuple[dict[str, str], list[GroupMerge]]:
    """Analyse, resolve and commit one level: returns (group -> merge commit, the analyses)."""
    with repo.run_lock(run):
        merges = analyse_groups(repo, groups, timestamp=timestamp)
        resolutions = resolve(merges)
        return write_group_commits(
            repo, run, level, merges, resolutions, timestamp=timestamp
        ), merges


def consolidate(
    repo: SkillRepo,
    run: str,
    children: Sequence[str],
    *,
    timestamp: int,
    group_size: int = 8,
    resolve: Resolver = union_resolver,
) -> str:
    """Merge children level by level in groups of ``group_size`` until one commit remains.

    Points ``t2s/<run>/result`` at the final commit and returns it.
    """
    if not children:
        raise RepoError("nothing to consolidate")
    current = list(children)
    level = 0
    with repo.run_lock(run):
        while len(current) > 1 or level == 0:
            level += 1
            groups = plan_groups(current, group_size)
            commits, _ = consolidate_level(
                repo, run, level, groups, timestamp=timestamp, resolve=resolve
            )
            if not commits and len(current) > 1:
                raise RepoError(f"level {level}: the resolver passed every group up")
            # a group the resolver declined passes its children up unchanged
            current = [
                c
                for name, kids in groups.items()
                for c in ([commits[name]] if name in commits else kids)
            ]
        repo.set_refs(run, {"result": current[0]}, replace=True)
    return current[0]
