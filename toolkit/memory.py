"""The retrieval memory baseline: ReasoningBank-style lessons, retrieved per task.

The paper compares a skill evolved from trajectories with a *memory* of them: the same
lessons kept as separate items and the most relevant ones shown to the agent per task. Here
the memory bank is built from what a run's analysts already wrote (no new model call):

- :func:`build_bank` turns each kept analysis of ``analyses.jsonl`` (``include="valid"``:
  also each dropped one whose analyst finished its reply) into one :class:`MemoryItem`:
  a title (the patch's first changelog line), a short description (the analyst's diagnosis
  or solution path), the content (the lesson text of the patch's edits), and its source
  (trajectory, task, question, pass/fail). It writes ``runs/<run>/memory.jsonl``: one
  :class:`BankInfo` line, then the items.
- :func:`bm25_scores` ranks items for a query (a small pure BM25 with its own tokenisation);
  :class:`Memory` retrieves the top ``k`` items (default 1) per task by the task's question,
  by BM25, or by cosine similarity of embeddings when an embedding model is configured
  (litellm's ``embedding``; ``fake/...`` names a deterministic hashed embedder for tests).
- :func:`memory_block` is the section the agent's system prompt gets after the skill: a
  new, delimited ``# Memory`` section, so the prompt without memory stays byte-identical.

A memory condition is S0 plus a bank: its version id, :meth:`Memory.condition`
(``memory-<16 hex>``, a hash of S0's tree id, the bank, ``k``, the retriever and the
block's wording), takes the skill's tree id's place in trajectory ids, eval files
(``evals/memory-<hash>/<split>.jsonl``) and every grouping by version, so it never mixes
with S0's tasks. Each trajectory records which items it was shown
(``metadata["memory"]``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.atomic import write_atomic
from toolkit.errors import ToolkitError
from toolkit.runs import ANALYSES_FILE, PATCHES_DIR, SPLITS_FILE, TRAJECTORIES_FILE

MEMORY_SCHEMA_VERSION = 1
MEMORY_FILE = "memory.jsonl"
#: The version id of a memory condition starts with this (a skill's is a 40-hex tree id).
MEMORY_PREFIX = "memory-"

MAX_TITLE_CHARS = 120
MAX_DESCRIPTION_CHARS = 300
MAX_CONTENT_CHARS = 2000
MAX_QUESTION_CHARS = 1000
#: Most items shown per task.
MAX_K = 10

Include = Literal["kept", "valid"]
"""Which analyses become items: ``kept`` (their patch passed the quality gate) or ``valid``
(also those dropped after the analyst finished its reply: a guardrail rejected the patch)."""

#: Drop reasons whose analysis holds no usable lesson (the model failed, the agentic
#: analyst's fix never passed, the lesson leaked the task's answer).
_NOT_VALID = ("model-error", "invalid-reply", "no-reply", "fix-not-passed", "answer-leak")

#: The memory section of the agent's system prompt (its wording is part of every memory
#: condition's id, so changing it runs memory tasks afresh).
MEMORY_HEADER = (
    "\n\n# Memory: lessons from earlier tasks\n"
    "Notes written after earlier tasks of this kind, retrieved for this task by its "
    "question. They may not all apply: use what helps."
)


class MemoryBankError(ToolkitError):
    """A memory bank cannot be built, read or used as asked."""


class MemoryItem(BaseModel):
    """One lesson of a memory bank: a line of ``memory.jsonl`` after the bank line."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = MEMORY_SCHEMA_VERSION
    kind: Literal["item"] = "item"
    id: str = Field(description="12 hex chars of a hash of the analysis and the text.")
    title: str = Field(max_length=MAX_TITLE_CHARS, description="One line naming the lesson.")
    description: str = Field(
        max_length=MAX_DESCRIPTION_CHARS, description="One sentence: what went wrong or right."
    )
    content: str = Field(max_length=MAX_CONTENT_CHARS, description="The lesson the analyst wrote.")
    source_trajectory: str = Field(description="Id of the analysed trajectory.")
    task_id: str = Field(description="Its task (never evaluated with this bank).")
    question: str = Field(
        "", max_length=MAX_QUESTION_CHARS, description="Its question (retrieval key, not shown)."
    )
    outcome: Literal["pass", "fail"] = Field(description="The trajectory's verdict.")
    analysis_id: str
    analyst: str
    status: Literal["kept", "dropped"] = Field(description="The analysis' status.")
    patch_id: str | None = Field(None, description="Its leaf patch (kept analyses).")

    def text(self) -> str:
        """What retrieval indexes: question, title, description and content."""
        return "\n".join((self.question, self.title, self.description, self.content))


class BankInfo(BaseModel):
    """The first line of ``memory.jsonl``: where the bank came from."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = MEMORY_SCHEMA_VERSION
    kind: Literal["bank"] = "bank"
    id: str = Field(description="16 hex chars of a hash of the items (their ids) and include.")
    run_id: str = Field(description="The run folder's name.")
    suite: str = Field(description="Suite of the analysed trajectories.")
    splits: list[str] = Field(description="Their splits.")
    source_hashes: dict[str, str] = Field(
        default_factory=dict, description="The run's data files (its splits.json)."
    )
    skill_commit: str | None = Field(None, description="The analysed skill (S0), when one.")
    include: Include
    analyses: int = Field(description="Analyses in analyses.jsonl.")
    items: int = Field(description="Items in the bank.")


class MemoryBank(BaseModel):
    """A bank as read from or written to ``memory.jsonl``."""

    info: BankInfo
    items: list[MemoryItem]

    def to_jsonl(self) -> str:
        """The file's text: the bank line, then one line per item."""
        lines = [self.info.model_dump_json(), *(i.model_dump_json() for i in self.items)]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Building a bank from a run's analyses
# ---------------------------------------------------------------------------------------------


def _digest(parts: Sequence[object], size: int) -> str:
    payload = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:size]


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def usable(record: Mapping[str, Any], include: Include) -> bool:
    """Whether the analyses.jsonl ``record`` becomes an item under ``include``."""
    if record.get("status") == "kept":
        return True
    reason = str(record.get("reason") or "")
    return (
        include == "valid"
        and bool(str(record.get("report") or "").strip())
        and not reason.startswith(_NOT_VALID)
    )


def _lesson(run_dir: Path, record: Mapping[str, Any]) -> tuple[str, str, str]:
    """(title, description, content) of an analysis: from its leaf patch when it has one
    (the changelog's first line, the report's first line, the edits' text), else from its
    report alone."""
    from toolkit.errors import PatchError
    from toolkit.patch import load_patch

    report = str(record.get("report") or "")
    # The report's "(faulty step: N)" line and the agentic analyst's thoughts after it are
    # about the one trajectory, not the lesson.
    lines = [ln for ln in report.splitlines() if not ln.strip().startswith("(faulty step:")]
    description = _first_line(report)
    patch = None
    if record.get("patch_id"):
        path = run_dir / PATCHES_DIR / f"{record['patch_id']}.json"
        if path.is_file():
            try:
                patch = load_patch(path)
            except PatchError:
                patch = None
    if patch is not None:
        texts = [e.content.strip() for e in patch.edits if e.content and e.content.strip()]
        title = next((c for c in patch.changelog_entries if c.strip()), "") or description
        description = description or _first_line(patch.reasoning)
        content = "\n\n".join(texts) or "\n".join(lines)
    else:
        title = description
        content = "\n".join(lines)
    return (
        _clip(_first_line(title), MAX_TITLE_CHARS),
        _clip(description, MAX_DESCRIPTION_CHARS),
        _clip(content, MAX_CONTENT_CHARS),
    )


def build_bank(run_dir: str | Path, include: Include = "kept", *, write: bool = True) -> MemoryBank:
    """The memory bank of ``run_dir``'s analyses (written to ``memory.jsonl`` with ``write``).

    Deterministic: items are ordered by task and analysis id, so building again from the
    same analyses writes the same bytes.

    Raises:
        MemoryBankError: no run folder, no analyses, unreadable records, or no analysis
            that ``include`` takes (the bank would be empty).
    """
    from toolkit.analysts.records import AnalysisRecord
    from toolkit.tasks.splits import load_splits
    from toolkit.trajectory import TrajectoryError, read_jsonl, read_trajectories

    run = Path(run_dir)
    if not run.is_dir():
        raise MemoryBankError(f"no run folder {run}")
    try:
        records = read_jsonl(run / ANALYSES_FILE, AnalysisRecord).records
        trajectories = {t.id: t for t in read_trajectories(run / TRAJECTORIES_FILE).records}
    except TrajectoryError as exc:
        raise MemoryBankError(f"cannot build a memory bank: {exc}") from None
    if not records:
        raise MemoryBankError(
            f"{run} has no analyses ({ANALYSES_FILE}): a memory bank is made of the lessons "
            f"the analysts wrote; run `trace2skill analyse {run}` (or `trace2skill evolve`) "
            "first"
        )
    items: list[MemoryItem] = []
    for record in records:
        data = record.model_dump()
        if not usable(data, include):
            continue
        title, description, content = _lesson(run, data)
        if not content:
            continue
        trajectory = trajectories.get(record.trajectory_id)
        items.append(
            MemoryItem(
                id=_digest([record.id, title, description, content], 12),
                title=title,
                description=description,
                content=content,
                source_trajectory=record.trajectory_id,
                task_id=record.task_id,
                question=_clip(trajectory.question, MAX_QUESTION_CHARS) if trajectory else "",
                outcome=record.outcome,
                analysis_id=record.id,
                analyst=record.analyst,
                status=record.status,
                patch_id=record.patch_id,
            )
        )
    if not items:
        reasons = Counter(str(r.reason or "").split(":", 1)[0] for r in records)
        counted = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        hint = " (--include valid also takes analyses a guardrail dropped)" * (include == "kept")
        raise MemoryBankError(
            f"the memory bank of {run} would be empty: none of its {len(records)} analyses "
            f"was {'kept' if include == 'kept' else 'usable'} ({counted}){hint}"
        )
    items.sort(key=lambda i: (i.task_id, i.analysis_id))
    analysed = [trajectories[r.trajectory_id] for r in records if r.trajectory_id in trajectories]
    commits = {t.skill_commit for t in analysed}
    splits_path = run / SPLITS_FILE
    try:
        splits = load_splits(splits_path) if splits_path.is_file() else None
    except ToolkitError:
        splits = None
    suite = next((t.suite for t in analysed if t.suite), splits.suite if splits else "")
    info = BankInfo(
        id=_digest([include, [i.id for i in items]], 16),
        run_id=run.resolve().name,
        suite=suite,
        splits=sorted({t.split for t in analysed if t.split}),
        source_hashes=splits.source_hashes if splits else {},
        skill_commit=next(iter(commits)) if len(commits) == 1 else None,
        include=include,
        analyses=len(records),
        items=len(items),
    )
    bank = MemoryBank(info=info, items=items)
    if write:
        write_atomic(run / MEMORY_FILE, bank.to_jsonl(), prefix=".memory-", suffix="")
    return bank


def read_bank(run_dir: str | Path) -> MemoryBank:
    """The bank in ``run_dir/memory.jsonl``.

    Raises:
        MemoryBankError: no bank there (saying how to build one), or a damaged file.
    """
    run = Path(run_dir)
    path = run / MEMORY_FILE
    if not path.is_file():
        if not run.is_dir():
            raise MemoryBankError(f"no run folder {run}")
        if not (run / ANALYSES_FILE).is_file():
            raise MemoryBankError(
                f"{run} has no memory bank and no analyses to build one from ({ANALYSES_FILE}): "
                "give a run whose trajectories were analysed (an evolve run)"
            )
        raise MemoryBankError(
            f"{run} has no memory bank ({MEMORY_FILE}): build it with "
            f"`trace2skill memory build {run}`"
        )
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    try:
        info = BankInfo.model_validate_json(lines[0]) if lines else None
        items = [MemoryItem.model_validate_json(ln) for ln in lines[1:]]
    except ValidationError as exc:
        why = exc.errors()[0]["msg"]
        raise MemoryBankError(f"{path} is damaged ({why}): build it again") from None
    if info is None or not items:
        raise MemoryBankError(f"{path} holds no memory items: build it again")
    return MemoryBank(info=info, items=items)


# ---------------------------------------------------------------------------------------------
# Retrieval (pure)
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscores; any script)."""
    return _WORD.findall(text.lower())


def bm25_scores(
    query: Sequence[str],
    documents: Sequence[Sequence[str]],
    *,
    k1: float = 1.2,
    b: float = 0.75,
) -> list[float]:
    """Okapi BM25 score of each tokenised document for the tokenised ``query``.

    Each distinct query term adds ``idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl /
    avgdl))``, with the non-negative ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` (a term
    in every document still counts a little). A document sharing no term scores 0.
    """
    n = len(documents)
    if n == 0:
        return []
    lengths = [len(d) for d in documents]
    avgdl = sum(lengths) / n or 1.0
    df = Counter(term for doc in documents for term in set(doc))
    counts = [Counter(doc) for doc in documents]
    scores = []
    for tf_doc, length in zip(counts, lengths, strict=True):
        score = 0.0
        for term in dict.fromkeys(query):
            tf = tf_doc.get(term, 0)
            if not tf:
                continue
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avgdl))
        scores.append(score)
    return scores


def top_k(scores: Sequence[float], k: int) -> list[tuple[int, float]]:
    """The ``k`` best (index, score) with a positive score, best first (ties: lower index)."""
    ranked = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: (-scores[i], i))
    return [(i, scores[i]) for i in ranked[:k]]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity (0 for a zero vector)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


Embedder = Callable[[Sequence[str]], list[list[float]]]
"""Texts -> one vector each."""


def hashed_embedder(dim: int = 256) -> Embedder:
    """A deterministic bag-of-words embedder (token counts hashed into ``dim`` buckets): what
    ``fake/...`` embedding models are, so tests exercise the embedding path offline."""

    def embed(texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vector = [0.0] * dim
            for token in tokenize(text):
                vector[int(hashlib.sha256(token.encode()).hexdigest()[:8], 16) % dim] += 1.0
            out.append(vector)
        return out

    return embed


def litellm_embedder(model: str) -> Embedder:
    """litellm's ``embedding`` for ``model`` (provider settings from the environment, as for
    completions). One call per batch of texts; not cached and not in the calls log."""
    from toolkit.llm._litellm import get_litellm
    from toolkit.llm.redact import redact

    def embed(texts: Sequence[str]) -> list[list[float]]:
        try:
            response = get_litellm().embedding(model=model, input=list(texts))
        except Exception as exc:  # noqa: BLE001 - any provider failure, said in one line
            raise MemoryBankError(f"embedding model {model} failed: {redact(str(exc))}") from None
        rows = [r["embedding"] if isinstance(r, dict) else r.embedding for r in response.data]
        return [[float(x) for x in row] for row in rows]

    return embed


def embedder_for(model: str) -> Embedder:
    """The embedder an ``embedding_model`` names.

    Raises:
        MemoryBankError: an embedded ``local/`` model (they serve no embeddings).
    """
    if model.startswith("fake/"):
        return hashed_embedder()
    if model.startswith("local/"):
        raise MemoryBankError(
            f"{model}: the embedded models serve no embeddings; name a litellm embedding "
            "model (e.g. openai/text-embedding-3-small), or leave the embedding model out "
            "for BM25"
        )
    return litellm_embedder(model)


class Retrieved(BaseModel):
    """An item retrieved for a task, with its score (BM25, or cosine similarity)."""

    item: MemoryItem
    score: float


class Memory(BaseModel):
    """A bank and how it is retrieved from: the memory part of an evaluation condition."""

    model_config = ConfigDict(frozen=True)

    bank: MemoryBank
    k: int = Field(1, ge=1, le=MAX_K, description="Items shown per task (top-k).")
    embedding_model: str | None = Field(
        None, description="Retrieve by cosine similarity of this model's embeddings; None: BM25."
    )
    k1: float = Field(1.2, gt=0, description="BM25 term-frequency saturation.")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation.")

    @property
    def retriever(self) -> str:
        """``bm25`` or ``embedding``."""
        return "embedding" if self.embedding_model else "bm25"

    def condition(self, skill_commit: str) -> str:
        """The version id of the skill ``skill_commit`` with this memory (``memory-<hash>``)."""
        sample = memory_block([_SAMPLE_ITEM])
        parts = [skill_commit, self.bank.info.id, self.k, self.retriever, self.embedding_model]
        if self.retriever == "bm25":
            parts += [self.k1, self.b]
        return MEMORY_PREFIX + _digest([*parts, sample], 16)

    def describe(self, skill_commit: str) -> dict[str, Any]:
        """What a trajectory and the manifest record of this memory."""
        return {
            "condition": self.condition(skill_commit),
            "skill_commit": skill_commit,
            "bank": self.bank.info.id,
            "run": self.bank.info.run_id,
            "k": self.k,
            "retriever": self.retriever,
            **({"embedding_model": self.embedding_model} if self.embedding_model else {}),
        }

    def check(self, suite: str, source_hashes: Mapping[str, str], task_ids: Sequence[str]) -> None:
        """Refuse to use the bank on another suite, other data files, or on a task it
        learned from.

        Raises:
            MemoryBankError: the first of those.
        """
        info = self.bank.info
        if info.suite and info.suite != suite:
            raise MemoryBankError(
                f"the memory bank of run {info.run_id!r} holds lessons from {info.suite} "
                f"tasks; this evaluation is on {suite}: build a bank from a run on {suite}"
            )
        other = sorted(n for n, h in source_hashes.items() if info.source_hashes.get(n) != h)
        if info.source_hashes and other:
            raise MemoryBankError(
                f"the memory bank of run {info.run_id!r} was learned from other data files "
                f"({', '.join(other)} differ; it read {', '.join(sorted(info.source_hashes))})"
            )
        learned = {i.task_id for i in self.bank.items}
        overlap = [t for t in task_ids if t in learned]
        if overlap:
            raise MemoryBankError(
                f"the memory bank of run {info.run_id!r} learned from {len(overlap)} of the "
                f"tasks to evaluate ({', '.join(overlap[:3])}): its lesson of a task would "
                "be retrieved for that task. Evaluate on another split (the test split)"
            )

    def retrieve(self, questions: Mapping[str, str]) -> dict[str, list[Retrieved]]:
        """The top ``k`` items for each task (task id -> question), best first."""
        items = self.bank.items
        if self.embedding_model:
            embed = embedder_for(self.embedding_model)
            ids = list(questions)
            vectors = embed([i.text() for i in items] + [questions[t] for t in ids])
            docs, queries = vectors[: len(items)], vectors[len(items) :]
            scores = {t: [cosine(q, d) for d in docs] for t, q in zip(ids, queries, strict=True)}
        else:
            docs_tokens = [tokenize(i.text()) for i in items]
            scores = {
                t: bm25_scores(tokenize(q), docs_tokens, k1=self.k1, b=self.b)
                for t, q in questions.items()
            }
        return {
            t: [Retrieved(item=items[i], score=round(s, 6)) for i, s in top_k(scores[t], self.k)]
            for t in questions
        }


def memory_block(items: Sequence[MemoryItem]) -> str:
    """The memory section of the agent's system prompt ("" without items: the prompt is
    then exactly the one without memory)."""
    if not items:
        return ""
    parts = [MEMORY_HEADER]
    for number, item in enumerate(items, start=1):
        parts.append(f"\n\n## Memory {number}: {item.title}\n{item.description}\n\n{item.content}")
    return "".join(parts)


_SAMPLE_ITEM = MemoryItem(
    id="0" * 12,
    title="title",
    description="description",
    content="content",
    source_trajectory="t",
    task_id="t",
    outcome="fail",
    analysis_id="a",
    analyst="error-single",
    status="kept",
)


def shown(memory: Memory, skill_commit: str, retrieved: Sequence[Retrieved]) -> dict[str, Any]:
    """A trajectory's ``metadata["memory"]``: the condition and the items it was shown."""
    return {
        **memory.describe(skill_commit),
        "items": [r.item.id for r in retrieved],
        "scores": [r.score for r in retrieved],
    }


def is_memory_condition(commit: str) -> bool:
    """Whether a version id is a memory condition's (:meth:`Memory.condition`)."""
    return commit.startswith(MEMORY_PREFIX)


def run_memory_condition(run_dir: str | Path, skill_commit: str) -> str | None:
    """The version id of ``skill_commit`` with the run's own bank at the defaults an evolve
    ``--memory-baseline`` uses (top-1, BM25); None when the run has no readable bank."""
    try:
        bank = read_bank(run_dir)
    except MemoryBankError:
        return None
    return Memory(bank=bank).condition(skill_commit)


__all__ = [
    "MEMORY_FILE",
    "MEMORY_PREFIX",
    "MEMORY_SCHEMA_VERSION",
    "BankInfo",
    "Embedder",
    "Include",
    "Memory",
    "MemoryBank",
    "MemoryBankError",
    "MemoryItem",
    "Retrieved",
    "bm25_scores",
    "build_bank",
    "cosine",
    "embedder_for",
    "hashed_embedder",
    "is_memory_condition",
    "memory_block",
    "read_bank",
    "run_memory_condition",
    "shown",
    "tokenize",
    "top_k",
]
