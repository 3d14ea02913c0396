"""The merge operator: one consolidated patch per group, as a :data:`toolkit.repo.Resolver`.

The model only proposes; the code decides. Per group the operator

1. re-checks the children's edits against the base skill (edits that fail the guardrails
   are recorded as dropped and not shown to the model) and pools equal edits by id, which
   already merges their leaf patches (support);
2. takes the union of the pooled edits without a model call when the group has one child, or
   under the ``git`` strategy when git found no conflict, else asks the model for one patch
   citing the pooled edit ids it used;
3. rejects a reply with more edits than unique inputs, drops edits that cite unknown ids,
   re-anchors drifted anchors only when the match is unique, computes each edit's leaf
   sources and support from the citations, applies ``min_support`` on the final merge, and
   runs the patch engine's guardrails on the base skill;
4. retries once, with the budget stated, when the result is over the size budget.

A group that fails passes its children up unchanged (the final forced merge falls back to
the union instead). Every decision lands in the group's :class:`MergeRecord`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import defaultdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from toolkit.analysts.snippets import code_problem
from toolkit.consolidate.anchors import anchor_field, reanchor
from toolkit.consolidate.nodes import EditPool, Node, cite, pool_edits, union_candidates
from toolkit.consolidate.prompt import MergeReply, budget_retry_messages, build_messages
from toolkit.consolidate.records import (
    ConflictCount,
    DroppedEdit,
    EditSources,
    MergeRecord,
    MergeStatus,
    Reanchor,
)
from toolkit.errors import ContextWindowError, LLMError, ToolkitError
from toolkit.known import add_known
from toolkit.llm.gateway import AFTER_REPAIR, Gateway
from toolkit.patch import Edit, Patch, PatchResult, apply_patch
from toolkit.repo import GroupMerge, Resolution
from toolkit.skill import Budgets, Skill
from toolkit.sync import run_sync

Strategy = Literal["llm", "git"]
# Rejections that come from two children touching the same text, not from a broken edit.
_BETWEEN_CHILDREN = frozenset({"conflict", "duplicate-content", "section-exists"})


class OperatorSettings(BaseModel):
    """How the operator merges (the parts of the stage config it needs)."""

    strategy: Strategy = "llm"
    model: str
    max_tokens: int = 2048
    temperature: float | None = 0.0
    min_support: int = 1
    budgets: Budgets = Budgets()
    allow_protected: bool = False


class GroupOutcome(BaseModel):
    """What the operator decided for one group."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    record: MergeRecord
    """The merges.jsonl line (``commit`` is filled in once the commit is written)."""
    patch: Patch | None = None
    """The consolidated patch (None when the children pass up or the group failed)."""
    resolution: Resolution


class _Failure(Exception):
    """The model's merge cannot be used; the message is the recorded reason."""


class _Built(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    patch: Patch
    edits: list[EditSources]
    dropped: list[DroppedEdit]
    reanchored: list[Reanchor]
    result: PatchResult


def _hash(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class MergeOperator:
    """Merges the groups of a level; call :meth:`aresolve` (async) or use it as a Resolver.

    The runner registers the nodes behind each commit (:meth:`register`) and sets
    :attr:`forced` for the final merge; outcomes are kept in :attr:`outcomes` by group.
    """

    def __init__(
        self, skill: Skill, skill_prefix: str, settings: OperatorSettings, gateway: Gateway
    ) -> None:
        self.skill = skill
        self.prefix = skill_prefix
        self.settings = settings
        self.gateway = gateway
        self.nodes: dict[str, Node] = {}
        self.level = 1
        self.forced = False
        self.outcomes: dict[str, GroupOutcome] = {}

    def register(self, nodes: list[Node]) -> None:
        """Make nodes known by their commit ids."""
        self.nodes.update({n.commit: n for n in nodes})

    def __call__(self, merges: list[GroupMerge]) -> list[Resolution]:
        """The :data:`~toolkit.repo.Resolver` protocol (not from inside a running event loop)."""
        return run_sync(self.aresolve(merges))

    async def aresolve(self, merges: list[GroupMerge], on_done: Any = None) -> list[Resolution]:
        """Resolve every group of a level concurrently (the gateway bounds the requests)."""

        async def one(merge: GroupMerge) -> Resolution:
            outcome = await self.merge_group(merge)
            self.outcomes[merge.group] = outcome
            if on_done is not None:
                on_done(outcome)
            return outcome.resolution

        return list(await asyncio.gather(*(one(m) for m in merges)))

    # ------------------------------------------------------------------ one group

    def _check_children(self, nodes: list[Node]) -> tuple[set[str], list[DroppedEdit], set[str]]:
        """(edit ids failing the guardrails, their records, repo paths the children change).

        One guarded application of all the children's edits together: the edits rejected
        for a reason of their own (bad path, missing anchor...) are the children's failures;
        conflicts and duplicates between children are what the merge is for, so they count
        as fine here.
        """
        s = self.settings
        pool = pool_edits(nodes)
        check = Patch(reasoning="children", edits=list(pool.edits.values()))
        result = apply_patch(
            self.skill, check, allow_protected=s.allow_protected, budgets=s.budgets
        )
        bad: set[str] = set()
        dropped: list[DroppedEdit] = []
        for report in result.rejected:
            if report.reason in _BETWEEN_CHILDREN:
                continue
            bad.add(report.id)
            owners = ", ".join(pool.owners.get(report.id, []))
            dropped.append(
                DroppedEdit(
                    edit_id=report.id, reason=f"child {owners}: {report.reason}: {report.message}"
                )
            )
        files = {self.prefix + e.file.removeprefix("./") for e in check.edits}
        files |= {self.prefix + p for p in result.changed_files}
        return bad, dropped, files

    async def merge_group(self, merge: GroupMerge) -> GroupOutcome:
        """Decide one group: merged, union, passed up or failed."""
        started = time.time()
        nodes = [self.nodes[c] for c in merge.children]
        skip, dropped, touched = self._check_children(nodes)
        pool = pool_edits(nodes, skip)
        conflicts: dict[str, int] = defaultdict(int)
        for conflict in merge.conflicts:
            conflicts[conflict.file] += len(conflict.hunks)
        record = MergeRecord(
            level=self.level,
            group=merge.group,
            children=[n.id for n in nodes],
            child_commits=[n.commit for n in nodes],
            status="failed",
            forced=self.forced,
            conflicts=[ConflictCount(file=f, hunks=h) for f, h in sorted(conflicts.items())],
            dropped=dropped,
            started_at=started,
        )
        if not pool.edits:
            reason = (
                "every child edit failed the guardrails" if skip else "the children hold no edits"
            )
            return self._declined(record, "failed", reason)
        if len(nodes) == 1 and not self.forced:
            return self._declined(record, "passed_up", "a group of one child: nothing to merge")
        use_union = len(nodes) == 1 or (self.settings.strategy == "git" and merge.clean)
        built: _Built | None = None
        if not use_union:
            try:
                built = await self._merge_with_model(record, nodes, pool, merge)
            except _Failure as exc:
                if not self.forced:
                    return self._declined(record, "passed_up", str(exc))
                record.reason = f"forced merge fell back to the union: {exc}"
        if built is None:
            built = self._build(record, pool, union_candidates(pool))
            if not built.result.valid or not built.patch.edits:
                issue = next((i for i in built.result.issues if i.severity == "error"), None)
                why = f"{issue.code}: {issue.message}" if issue else "no edit applied"
                return self._declined(record, "failed", f"the union of the children fails: {why}")
            status: MergeStatus = "union"
            record.reason = record.reason or (
                "one child" if len(nodes) == 1 else "no conflict: git's textual union"
            )
        else:
            status = "merged"
        return self._accepted(record, status, built, touched)

    def _declined(self, record: MergeRecord, status: MergeStatus, reason: str) -> GroupOutcome:
        record.status, record.reason, record.ended_at = status, reason, time.time()
        return GroupOutcome(record=record, resolution=Resolution(passed_up=True))

    async def _merge_with_model(
        self, record: MergeRecord, nodes: list[Node], pool: EditPool, merge: GroupMerge
    ) -> _Built:
        s = self.settings
        record.model = s.model
        messages = build_messages(
            self.skill,
            nodes,
            pool,
            merge,
            skill_prefix=self.prefix,
            budgets=s.budgets,
            final=self.forced,
            min_support=s.min_support,
        )
        for attempt in (1, 2):
            reply = await self._ask(record, messages)
            if len(reply.edits) > len(pool.edits):
                raise _Failure(
                    f"the reply has {len(reply.edits)} edits for {len(pool.edits)} unique inputs"
                )
            built = self._build(
                record,
                pool,
                [(e.model_dump(exclude={"cited"}), list(e.cited)) for e in reply.edits],
                reasoning=reply.reasoning,
                changelog=list(reply.changelog_entries),
            )
            errors = [i for i in built.result.issues if i.severity == "error"]
            over = [i for i in errors if i.code == "too-long"]
            if over and attempt == 1:
                messages = budget_retry_messages(messages, reply, over[0].message)
                continue
            if errors:
                raise _Failure(
                    f"the merged skill is invalid: {errors[0].code}: {errors[0].message}"
                )
            if not built.patch.edits:
                raise _Failure("no edit of the merge applied")
            cited = {c for e in built.edits for c in e.cited}
            built.dropped += [
                DroppedEdit(edit_id=eid, reason="left out by the merge operator")
                for eid in pool.edits
                if eid not in cited
            ]
            return built
        raise AssertionError("unreachable")

    async def _ask(self, record: MergeRecord, messages: list[dict[str, Any]]) -> MergeReply:
        s = self.settings
        params: dict[str, Any] = {"max_tokens": s.max_tokens}
        if s.temperature is not None:
            params["temperature"] = s.temperature
        record.attempts += 1
        try:
            completion = await self.gateway.acomplete_full(
                messages, model=s.model, response_model=MergeReply, **params
            )
        except ContextWindowError as exc:  # the prompt cannot fit: no retry would do better
            raise _Failure(f"invalid merge reply: {exc}") from None
        except LLMError as exc:
            if AFTER_REPAIR in str(exc):  # the model answered, never in the schema
                raise _Failure(f"invalid merge reply: {exc}") from None
            # The request itself failed (a server down, a refused key): passing the children
            # up, or the union for the final merge, would make an S* no model merged, recorded
            # done, so the stage stops undecided and a resume merges the group again.
            raise ToolkitError(
                f"the merge operator's request failed (level {self.level}, {record.group}): "
                f"{exc}. Fix the model settings (--author-model, its server, the provider's "
                "API key) and run `trace2skill consolidate RUN_DIR --resume` (evolve --resume "
                "goes on by itself)"
            ) from None
        record.tokens_in = add_known(record.tokens_in, completion.tokens_in)
        record.tokens_out = add_known(record.tokens_out, completion.tokens_out)
        record.cached += completion.cache_hit
        return completion.value

    def _build(
        self,
        record: MergeRecord,
        pool: EditPool,
        candidates: list[tuple[dict[str, Any], list[str]]],
        *,
        reasoning: str | None = None,
        changelog: list[str] | None = None,
    ) -> _Built:
        """Turn cited edits into the consolidated patch, checked on the base skill."""
        s = self.settings
        dropped: list[DroppedEdit] = []
        reanchored: list[Reanchor] = []
        kept: dict[str, tuple[Edit, list[str]]] = {}
        for fields, cited in candidates:
            fields = {k: v for k, v in fields.items() if k != "id"}
            unknown = [c for c in cited if c not in pool.edits]
            try:
                edit = Edit.model_validate(fields)
            except ValidationError as exc:
                first = exc.errors()[0]["msg"]
                dropped.append(DroppedEdit(edit_id="(invalid)", reason=f"invalid edit: {first}"))
                continue
            if unknown:
                dropped.append(
                    DroppedEdit(
                        edit_id=str(edit.id),
                        reason=f"cites unknown edit ids: {', '.join(unknown[:5])}",
                    )
                )
                continue
            # The analysts' code checks hold for what the merge operator writes too: the
            # real run's 1.5B merged unfenced, cut-off code into the skill's preamble.
            problem = code_problem(edit.content or "", edit.op)
            if problem is not None:
                dropped.append(DroppedEdit(edit_id=str(edit.id), reason=": ".join(problem)))
                continue
            field = anchor_field(edit)
            text = self.skill.files.get(edit.file)
            anchors = [getattr(pool.edits[c], field) or "" for c in cited] if field else []
            moved, why = reanchor(edit, text if isinstance(text, str) else None, anchors)
            if moved is None:
                dropped.append(DroppedEdit(edit_id=str(edit.id), reason=str(why)))
                continue
            if moved is not edit and field is not None:
                reanchored.append(
                    Reanchor(
                        edit_id=str(moved.id),
                        field=field,
                        old=str(getattr(edit, field)),
                        new=str(getattr(moved, field)),
                    )
                )
            eid = str(moved.id)
            if eid in kept:  # the same edit twice: one edit citing both
                kept[eid] = (moved, sorted(set(kept[eid][1]) | set(cited)))
            else:
                kept[eid] = (moved, list(cited))
        provenance = {eid: cite(pool, edit, cited) for eid, (edit, cited) in kept.items()}
        if self.forced and s.min_support > 1:
            for eid, prov in list(provenance.items()):
                if prov.support < s.min_support:
                    dropped.append(
                        DroppedEdit(
                            edit_id=eid,
                            reason=f"support {prov.support} < min-support {s.min_support}",
                        )
                    )
                    del kept[eid], provenance[eid]
        edits = [edit for edit, _ in kept.values()]
        default_reason = f"Union of {len(record.children)} patches (no model call)."
        draft = Patch(reasoning=reasoning or default_reason, edits=edits)
        result = apply_patch(
            self.skill, draft, allow_protected=s.allow_protected, budgets=s.budgets
        )
        for report in result.rejected:
            dropped.append(
                DroppedEdit(edit_id=report.id, reason=f"{report.reason}: {report.message}")
            )
            provenance.pop(report.id, None)
        applied = [e for e in edits if str(e.id) in provenance]
        sources = sorted({leaf for p in provenance.values() for leaf in p.sources})
        body = Patch(reasoning=draft.reasoning, edits=applied)
        patch = Patch(
            reasoning=draft.reasoning,
            edits=applied,
            changelog_entries=changelog
            or [f"Consolidate {len(record.children)} patches ({len(applied)} edits)"],
            sources=sources,
            id=_hash({"content": body.content_hash(), "sources": sources}),
        )
        return _Built(
            patch=patch,
            edits=[provenance[str(e.id)] for e in applied],
            dropped=dropped,
            reanchored=reanchored,
            result=result,
        )

    def _accepted(
        self,
        record: MergeRecord,
        status: MergeStatus,
        built: _Built,
        touched: set[str],
    ) -> GroupOutcome:
        result = built.result
        record.status = status
        record.patch_id = built.patch.id
        record.edits = built.edits
        record.dropped += built.dropped
        record.reanchored = built.reanchored
        record.ended_at = time.time()
        changes: dict[str, bytes | None] = {}
        for path in sorted(touched | {self.prefix + p for p in result.changed_files}):
            content = result.files.get(path.removeprefix(self.prefix))
            changes[path] = content.encode() if isinstance(content, str) else content
        level = f"L{record.level} {record.group}"
        subject = built.patch.changelog_entries[0] if built.patch.changelog_entries else ""
        body = "\n".join(
            [*built.patch.changelog_entries[1:], ""]
            + [f"edit {e.id}: support {e.support}" for e in built.edits]
        )
        resolution = Resolution(
            changes=changes,
            subject=f"trace2skill: {level}: {subject}"[:200],
            body=body,
            sources=built.patch.sources,
            model=record.model,
        )
        return GroupOutcome(record=record, patch=built.patch, resolution=resolution)
