"""The retrieval memory baseline: BM25, the bank built from a run's analyses, its checks,
the memory section of the agent's prompt, and the CLI (toolkit.memory, trace2skill memory)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from toolkit.agent import Agent, AgentConfig, agent_fingerprint, system_prompt
from toolkit.analysts.records import AnalysisRecord
from toolkit.cli import main
from toolkit.llm import Gateway, LLMConfig, fake_model
from toolkit.memory import (
    MEMORY_FILE,
    Memory,
    MemoryBankError,
    MemoryItem,
    bm25_scores,
    build_bank,
    hashed_embedder,
    memory_block,
    read_bank,
    tokenize,
    top_k,
)
from toolkit.patch import Patch
from toolkit.sandbox import SandboxPool
from toolkit.skill import load_skill
from toolkit.tasks import VENDORED_DATA_DIR, get_suite
from toolkit.tasks.splits import make_splits, save_splits
from toolkit.trajectory import Trajectory, Verdict, append_jsonl, trajectory_id

ROOT = Path(__file__).resolve().parents[1]
GSM8K = get_suite("gsm8k", data_dir=VENDORED_DATA_DIR)

# ---------------------------------------------------------------------------------------------
# BM25 (pure)
# ---------------------------------------------------------------------------------------------


def test_tokenize_lowercases_words_and_numbers() -> None:
    assert tokenize("How many Eggs, per-day? 16 eggs!") == [
        "how", "many", "eggs", "per", "day", "16", "eggs",
    ]  # fmt: skip


def test_bm25_ranks_the_item_that_shares_the_rare_words_first() -> None:
    docs = [
        tokenize("Count the rows of the table before answering the question"),
        tokenize("Convert percentages to fractions before you multiply the price"),
        tokenize("Read the question again: the answer is a date in the table"),
    ]
    query = tokenize("What percentages of the price is tax?")
    scores = bm25_scores(query, docs)
    assert top_k(scores, 1)[0][0] == 1
    assert scores[1] > scores[0] and scores[1] > scores[2]
    # A query sharing no word with any document retrieves nothing (nothing to rank by).
    assert top_k(bm25_scores(tokenize("zebra xylophone"), docs), 3) == []
    # The textbook formula, by hand, for one term of one document.
    n, df, tf, length = 3, 1, 1, len(docs[1])
    avgdl = sum(map(len, docs)) / 3
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    one = idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * length / avgdl))
    assert bm25_scores(["percentages"], docs)[1] == pytest.approx(one)
    # b = 0: no length normalisation; a longer document scores no less for one match.
    padded = [["tax", *["pad"] * 20], ["tax"]]
    assert bm25_scores(["tax"], padded, b=0.0)[0] == pytest.approx(
        bm25_scores(["tax"], padded, b=0.0)[1]
    )
    assert bm25_scores(["tax"], padded)[0] < bm25_scores(["tax"], padded)[1]
    # Ties go to the earlier item; k limits how many come back.
    assert top_k([1.0, 2.0, 2.0, 0.0], 2) == [(1, 2.0), (2, 2.0)]
    assert bm25_scores(["x"], []) == []


def test_hashed_embedder_is_deterministic_and_bag_of_words() -> None:
    embed = hashed_embedder(32)
    a, b, c = embed(["eggs per day", "day per eggs", "tax rate"])
    assert a == b and a != c and sum(a) == 3


# ---------------------------------------------------------------------------------------------
# A run folder to build banks from (the records the analyse stage writes)
# ---------------------------------------------------------------------------------------------

LESSONS = {
    "gsm8k-test-0": "Count the eggs left per day before multiplying by the price.",
    "gsm8k-test-2": "Add the repair cost to the purchase price before the percentage increase.",
}


def _trajectory(task_id: str, question: str, passed: bool) -> Trajectory:
    return Trajectory(
        id=trajectory_id("gsm8k", task_id, "c0ffee", "fake/m", 0, "system"),
        task_id=task_id,
        suite="gsm8k",
        split="train",
        question=question,
        skill_commit="c0ffee",
        model="fake/m",
        delivery="system",
        verdict=Verdict(passed=passed),
        stop_reason="submitted",
    )


def _analysis(t: Trajectory, status: str, **fields: Any) -> AnalysisRecord:
    return AnalysisRecord(
        id=f"a-{t.task_id}",
        trajectory_id=t.id,
        task_id=t.task_id,
        outcome="pass" if t.passed else "fail",
        analyst="error-single",
        model="fake/m",
        status=status,  # type: ignore[arg-type]
        started_at=0.0,
        ended_at=1.0,
        **fields,
    )


def source_run(root: Path, *, dropped_ok: bool = True) -> Path:
    """A gsm8k run folder whose analyses kept two patches (one lesson each), dropped one on a
    guardrail (a usable report) and one on a model error."""
    run = root / "src"
    tasks = {t.id: t for t in GSM8K.load("train").tasks}
    save_splits(make_splits(GSM8K, {"train": None}, seed=0), run / "splits.json")
    ids = list(tasks)[:4]
    trajectories = [_trajectory(i, tasks[i].question, False) for i in ids]
    append_jsonl(run / "trajectories.jsonl", trajectories)
    records = []
    for t in trajectories[:2]:
        patch = Patch.model_validate(
            {
                "reasoning": "the agent multiplied too early",
                "edits": [
                    {
                        "file": "SKILL.md",
                        "op": "append_to_section",
                        "target_section": "gsm8k-math/pitfalls",
                        "content": f"- {LESSONS[t.task_id]}",
                    }
                ],  # fmt: skip
                "changelog_entries": [f"Pitfalls: {t.task_id}"],
            }
        )
        (run / "patches").mkdir(exist_ok=True)
        (run / "patches" / f"{patch.id}.json").write_text(patch.model_dump_json())
        report = f"Multiplied before subtracting ({t.task_id})\n(faulty step: 1)"
        records.append(_analysis(t, "kept", patch_id=patch.id, report=report))
    reason = "patch-rejected: anchor-missing: no such text" if dropped_ok else "model-error: x"
    records.append(
        _analysis(
            trajectories[2], "dropped", reason=reason,
            report="Forgot to convert minutes to hours.\n(faulty step: 2)\nthought one",
        )
    )  # fmt: skip
    records.append(_analysis(trajectories[3], "dropped", reason="model-error: server down"))
    append_jsonl(run / "analyses.jsonl", records)
    return run


def test_build_bank_makes_one_item_per_kept_analysis(tmp_path: Path) -> None:
    run = source_run(tmp_path)
    bank = build_bank(run)
    assert [i.task_id for i in bank.items] == ["gsm8k-test-0", "gsm8k-test-2"]
    first = bank.items[0]
    assert first.title == "Pitfalls: gsm8k-test-0"
    assert first.description == "Multiplied before subtracting (gsm8k-test-0)"
    assert first.content == "- " + LESSONS["gsm8k-test-0"]
    assert first.question.startswith("Janet") and first.outcome == "fail"
    assert first.status == "kept" and first.patch_id and first.analysis_id == "a-gsm8k-test-0"
    info = bank.info
    assert (info.suite, info.splits, info.include, info.analyses, info.items) == (
        "gsm8k", ["train"], "kept", 4, 2,
    )  # fmt: skip
    assert info.skill_commit == "c0ffee" and info.run_id == "src" and info.source_hashes
    # Written as a bank line then the items; read back as built; built again byte-identical.
    text = (run / MEMORY_FILE).read_text()
    assert [json.loads(line)["kind"] for line in text.splitlines()] == ["bank", "item", "item"]
    assert read_bank(run) == bank
    build_bank(run)
    assert (run / MEMORY_FILE).read_text() == text
    # --include valid also takes the analysis a guardrail dropped (its report is the lesson,
    # without the faulty-step line), never one that failed on the model.
    valid = build_bank(run, "valid", write=False)
    assert len(valid.items) == 3 and valid.info.id != bank.info.id
    dropped = next(i for i in valid.items if i.status == "dropped")
    assert dropped.title == "Forgot to convert minutes to hours."
    assert dropped.content == "Forgot to convert minutes to hours.\nthought one"


def test_build_bank_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(MemoryBankError, match="no run folder"):
        build_bank(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MemoryBankError, match=r"has no analyses \(analyses.jsonl\).*analyse"):
        build_bank(tmp_path / "empty")
    with pytest.raises(MemoryBankError, match="no memory bank and no analyses"):
        read_bank(tmp_path / "empty")
    run = source_run(tmp_path)
    with pytest.raises(MemoryBankError, match="memory build"):
        read_bank(run)
    # Nothing kept: an empty bank is refused, with the reasons and the --include hint.
    lines = [json.loads(x) for x in (run / "analyses.jsonl").read_text().splitlines()]
    for line in lines:
        line.update(status="dropped", patch_id=None, reason="model-error: down")
    (run / "analyses.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(MemoryBankError, match=r"would be empty.*model-error 4.*--include valid"):
        build_bank(run)
    assert not (run / MEMORY_FILE).exists()


def test_memory_is_refused_on_other_suites_data_or_its_own_tasks(tmp_path: Path) -> None:
    memory = Memory(bank=build_bank(source_run(tmp_path)))
    hashes = memory.bank.info.source_hashes
    memory.check("gsm8k", hashes, ["gsm8k-test-3"])  # a test task of the same data: fine
    with pytest.raises(MemoryBankError, match="from gsm8k tasks; this evaluation is on wikitq"):
        memory.check("wikitq", hashes, ["nu-1"])
    other = {name: "0" * 64 for name in hashes}
    with pytest.raises(MemoryBankError, match="learned from other data files"):
        memory.check("gsm8k", other, ["gsm8k-test-3"])
    with pytest.raises(MemoryBankError, match=r"learned from 1 of the tasks.*gsm8k-test-2"):
        memory.check("gsm8k", hashes, ["gsm8k-test-3", "gsm8k-test-2"])


def test_retrieval_by_question_and_the_condition_id(tmp_path: Path) -> None:
    bank = build_bank(source_run(tmp_path))
    memory = Memory(bank=bank)
    eggs, repair = bank.items
    found = memory.retrieve(
        {"a": "How many eggs does the farm sell per day?", "b": "zebra", "c": repair.question}
    )
    assert [r.item.id for r in found["a"]] == [eggs.id] and found["a"][0].score > 0
    assert found["b"] == [] and [r.item.id for r in found["c"]] == [repair.id]
    assert len(Memory(bank=bank, k=2).retrieve({"a": "eggs price"})["a"]) == 2
    # By embeddings when an embedding model is configured (fake/: the hashed embedder).
    embedded = Memory(bank=bank, embedding_model="fake/embed")
    assert embedded.retriever == "embedding"
    assert [r.item.id for r in embedded.retrieve({"a": eggs.question})["a"]] == [eggs.id]
    with pytest.raises(MemoryBankError, match="serve no embeddings"):
        Memory(bank=bank, embedding_model="local/qwen").retrieve({"a": "x"})
    # The condition names the skill, the bank and the retrieval: each changes it.
    ids = {
        memory.condition("s0"),
        memory.condition("s1"),
        Memory(bank=bank, k=2).condition("s0"),
        embedded.condition("s0"),
        Memory(bank=build_bank(source_run(tmp_path / "v"), "valid")).condition("s0"),
    }
    assert len(ids) == 5 and all(i.startswith("memory-") and len(i) == 23 for i in ids)
    assert memory.condition("s0") == Memory(bank=read_bank(tmp_path / "src")).condition("s0")


# ---------------------------------------------------------------------------------------------
# The agent's prompt
# ---------------------------------------------------------------------------------------------

#: agent_fingerprint of every protocol x delivery, as the toolkit computed them before the
#: memory baseline existed: the memory section must change none (finished tasks of every
#: existing condition keep their trajectory ids).
FINGERPRINTS = {
    ("json", "system"): "e4be4984b29e", ("json", "progressive"): "5cbf4de00991",
    ("json", "none"): "56bbc1341912", ("code", "system"): "969d568b8069",
    ("code", "progressive"): "83f2f66137a4", ("code", "none"): "92e184cfe003",
    ("tools", "system"): "161dbe6f44c7", ("tools", "progressive"): "139da0b47346",
    ("tools", "none"): "30aca5ee68a2", ("plain", "system"): "c43c64b999e0",
    ("plain", "progressive"): "843a0d2da0b1", ("plain", "none"): "5fbfc3b521be",
}  # fmt: skip


def test_agent_fingerprints_are_unchanged() -> None:
    for (protocol, delivery), fingerprint in FINGERPRINTS.items():
        config = AgentConfig(protocol=protocol, delivery=delivery)  # type: ignore[arg-type]
        assert agent_fingerprint(config) == fingerprint, (protocol, delivery)


def _item(n: int, content: str) -> MemoryItem:
    return MemoryItem(
        id=f"{n:012d}", title=f"Lesson {n}", description=f"What happened {n}.", content=content,
        source_trajectory="t", task_id=f"t{n}", outcome="fail", analysis_id="a",
        analyst="error-single", status="kept",
    )  # fmt: skip


def test_memory_block_is_a_delimited_section_and_empty_without_items() -> None:
    assert memory_block([]) == ""
    block = memory_block([_item(1, "- Check units."), _item(2, "- Re-read.")])
    assert block.startswith("\n\n# Memory: lessons from earlier tasks\n")
    assert "\n\n## Memory 1: Lesson 1\nWhat happened 1.\n\n- Check units." in block
    assert block.endswith("## Memory 2: Lesson 2\nWhat happened 2.\n\n- Re-read.")


@pytest.mark.parametrize("protocol", ["json", "code", "plain"])
def test_the_agent_puts_memory_after_its_system_prompt_and_nothing_without(
    protocol: str, tmp_path: Path
) -> None:
    skill = load_skill(ROOT / "skills" / "gsm8k-math")
    config = AgentConfig(protocol=protocol)  # type: ignore[arg-type]
    block = memory_block([_item(1, "- Convert percentages first.")])
    seen: list[str] = []

    def script(messages: list[dict[str, Any]]) -> Any:
        seen.append(messages[0]["content"])
        return {"thought": "t", "cited_sections": [], "tool": "submit", "args": {"answer": "42"}}

    async def go(model: str, memory: str) -> None:
        llm = LLMConfig(model=model, cache=False, cache_dir=tmp_path / "cache", max_retries=0)
        gateway = Gateway(llm)
        try:
            async with SandboxPool(size=1) as pool, pool.session(None) as session:
                agent = Agent(model, gateway, skill, config)
                await agent.run("Problem: what is 6 * 7?", session, seed=1, memory=memory)
        finally:
            gateway.close()

    with fake_model(script) as model:
        asyncio.run(go(model, ""))
        asyncio.run(go(model, block))
    assert seen[0] == system_prompt(skill, config)  # byte for byte the prompt without memory
    assert seen[-1] == system_prompt(skill, config) + block


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_memory_build_and_show(tmp_path: Path) -> None:
    run = source_run(tmp_path)
    runner = CliRunner()
    shown = runner.invoke(main, ["memory", "show", str(run)])
    assert shown.exit_code == 1 and f"trace2skill memory build {run}" in shown.output
    built = runner.invoke(main, ["memory", "build", str(run)])
    assert built.exit_code == 0, built.output
    assert "2 items from 4 analyses (include kept); suite gsm8k, split(s) train" in built.output
    assert "Pitfalls: gsm8k-test-0" in built.output and LESSONS["gsm8k-test-2"] in built.output
    as_json = json.loads(runner.invoke(main, ["memory", "show", str(run), "--json"]).output)
    assert as_json["info"]["items"] == 2 and len(as_json["items"]) == 2
    query = runner.invoke(main, ["memory", "show", str(run), "--query", "repair cost percentage"])
    assert query.exit_code == 0 and query.output.startswith("1. ")
    assert "task gsm8k-test-2" in query.output and "gsm8k-test-0" not in query.output
    valid = runner.invoke(main, ["memory", "build", str(run), "--include", "valid", "--json"])
    assert json.loads(valid.output)["info"]["items"] == 3
    bare = tmp_path / "bare"
    bare.mkdir()
    none = runner.invoke(main, ["memory", "build", str(bare)])
    assert none.exit_code == 1 and "has no analyses" in none.output
    assert "Traceback" not in none.output
