"""The children of a merge group: leaf patches or consolidated patches, with edit provenance."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from toolkit.analysts.patches import ADDITIVE_OPS
from toolkit.consolidate.records import EditSources, MergeRecord
from toolkit.patch import Edit, Patch


class Node(BaseModel):
    """A patch in the consolidation tree: a leaf (an analyst's patch) or a group's merge."""

    id: str
    """Patch id (``patches/<id>.json``)."""
    commit: str
    """Its commit: ``t2s/<run>/patch/<id>`` or ``t2s/<run>/L<k>/<group>``."""
    patch: Patch
    edit_sources: dict[str, list[str]] = Field(default_factory=dict)
    """Edit id -> leaf patch ids behind that edit."""

    @property
    def leaves(self) -> list[str]:
        """Every leaf patch id behind this node (sorted)."""
        return sorted({leaf for leaves in self.edit_sources.values() for leaf in leaves})


def leaf_node(patch: Patch, commit: str) -> Node:
    """A leaf patch: each of its edits is supported by the patch itself."""
    assert patch.id is not None
    return Node(
        id=patch.id,
        commit=commit,
        patch=patch,
        edit_sources={str(e.id): [patch.id] for e in patch.edits},
    )


def merged_node(record: MergeRecord, patch: Patch) -> Node:
    """The node a merged group produced (from its record and its saved patch)."""
    assert record.commit is not None and patch.id is not None
    return Node(
        id=patch.id,
        commit=record.commit,
        patch=patch,
        edit_sources={e.id: list(e.sources) for e in record.edits},
    )


class EditPool(BaseModel):
    """The unique edits of a group's children (equal edits have equal ids and are pooled)."""

    edits: dict[str, Edit] = Field(default_factory=dict)
    """Edit id -> edit, in first-seen order."""
    sources: dict[str, list[str]] = Field(default_factory=dict)
    """Edit id -> leaf patch ids (sorted, unique)."""
    owners: dict[str, list[str]] = Field(default_factory=dict)
    """Edit id -> ids of the children holding it."""

    def support(self, edit_id: str) -> int:
        """How many leaf patches back one pooled edit."""
        return len(self.sources.get(edit_id, []))


def pool_edits(nodes: list[Node], skip: set[str] | None = None) -> EditPool:
    """Pool the children's edits by id, leaving out the ids in ``skip`` (failed guardrails)."""
    pool = EditPool()
    for node in nodes:
        for edit in node.patch.edits:
            eid = str(edit.id)
            if skip and eid in skip:
                continue
            pool.edits.setdefault(eid, edit)
            leaves = set(pool.sources.get(eid, [])) | set(node.edit_sources.get(eid, [node.id]))
            pool.sources[eid] = sorted(leaves)
            pool.owners.setdefault(eid, [])
            if node.id not in pool.owners[eid]:
                pool.owners[eid].append(node.id)
    return pool


def union_candidates(pool: EditPool) -> list[tuple[dict[str, Any], list[str]]]:
    """The union of the pooled edits as (edit fields, cited ids) for the merge's build.

    An adding edit whose text (spaces and case aside) another adding edit of the same file
    and section holds is folded into that one, which cites it (its support stays): the real
    WikiTQ run's forced union appended "If a column header is missing, ..." twice, alone and
    inside an edit a lower merge had made. Of equal texts the first stays.
    """
    ids = list(pool.edits)
    flat = {i: _flat(e.content) for i, e in pool.edits.items()}
    host: dict[str, str] = {}
    for n, i in enumerate(ids):
        a, text = pool.edits[i], flat[i]
        if a.op not in ADDITIVE_OPS or not text:
            continue
        for m, j in enumerate(ids):
            b, other = pool.edits[j], flat[j]
            same_place = (b.file, b.target_section) == (a.file, a.target_section)
            larger = len(other) > len(text) or (other == text and m < n)
            if j != i and b.op in ADDITIVE_OPS and same_place and text in other and larger:
                host[i] = j
                break

    def root(i: str) -> str:
        while i in host:  # strictly larger, or equal and earlier: no cycle
            i = host[i]
        return i

    folded: dict[str, list[str]] = {i: [i] for i in ids if i not in host}
    for i in host:
        folded[root(i)].append(i)
    return [(pool.edits[i].model_dump(), cited) for i, cited in folded.items()]


def _flat(text: str | None) -> str:
    return " ".join((text or "").split()).lower()


def _copied(child: Edit, edit: Edit) -> bool:
    """The edit's text holds the child's text, or the other way round (spaces and case aside)."""
    a, b = _flat(child.content), _flat(edit.content)
    return bool(a and b) and (a in b or b in a)


def cite(pool: EditPool, edit: Edit, cited: list[str]) -> EditSources:
    """Provenance of an edit made from the pooled edits ``cited``.

    A citation of every pooled edit is not a choice: the embedded 1.5B cited all 7 input
    edits for each of 5 output edits, each of which copied exactly one of them, which gave
    every edit the support of the whole group. When an edit cites them all and some cited
    edits are copied into it (or it into them), only those count; a real generalisation,
    which copies none, keeps its citations.
    """
    used = list(cited)
    if len(pool.edits) > 1 and set(cited) >= set(pool.edits):
        copied = [c for c in cited if _copied(pool.edits[c], edit)]
        used = copied or used
    leaves = sorted({leaf for c in used for leaf in pool.sources.get(c, [])})
    return EditSources(id=str(edit.id), cited=used, sources=leaves, support=len(leaves))
