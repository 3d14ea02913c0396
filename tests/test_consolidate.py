from __future__ import annotations

from pathlib import Path

import pytest

from tests.consolidate_helpers import (
    RUN,
    SKILL_REL,
    add_leaves,
    keep_all,
    leaf,
    lesson,
    llm,
    make_run,
)
from tests.repo_helpers import git
from toolkit.consolidate import (
    MERGES_FILE,
    ConsolidateConfig,
    MergeReply,
    parse_pool_from_prompt,
    plan_balanced,
    read_merges,
    read_patch,
    run_consolidation,
    save_patch,
    skill_lines,
)
from toolkit.errors import ToolkitError
from toolkit.llm import FaultKind, fake_model
from toolkit.patch import Edit
from toolkit.repo import GroupMerge, Resolution, SkillRepo, consolidate
from toolkit.rollout import read_manifest
from toolkit.skill import Budgets


def _config(**kw: object) -> ConsolidateConfig:
    return ConsolidateConfig(progress=False, **kw)  # type: ignore[arg-type]


def test_plan_balanced_has_no_group_of_one() -> None:
    groups = plan_balanced([str(i) for i in range(9)], 8)
    assert [len(g) for g in groups.values()] == [5, 4]
    assert list(groups) == ["g0001", "g0002"]
    assert sum(plan_balanced([str(i) for i in range(256)], 8).values(), []) == [
        str(i) for i in range(256)
    ]


def test_dedupe_and_support(tmp_path: Path) -> None:
    repo, run_dir = make_run(tmp_path)
    a, b, c = lesson("- Strip thousands separators."), lesson("- Dates: ISO."), lesson("- Sum.")
    ids = add_leaves(
        repo, run_dir, [leaf(a), leaf(a, why="again"), leaf(b), leaf(a, c, why="both")]
    )
    with fake_model(keep_all) as model:
        summary = run_consolidation(
            run_dir, _config(merge_batch=2), llm_config=llm(tmp_path, model)
        )
    assert summary.leaves == 4 and summary.levels == 2 and summary.merged == 3
    final = read_patch(run_dir, summary.final_patch_id)
    assert [e.content for e in final.edits].count("- Strip thousands separators.") == 1
    (top,) = [r for r in read_merges(run_dir) if r.forced]
    support = {e.id: e.support for e in top.edits}
    assert support[str(a.id)] == 3 and support[str(b.id)] == 1 and support[str(c.id)] == 1
    by_id = {e.id: e for e in top.edits}
    assert set(by_id[str(a.id)].sources) == {pid for pid in ids if pid != leaf(b).id}
    skill = git(repo.root, "show", f"t2s/{RUN}/result:{SKILL_REL}/SKILL.md")
    assert skill.count("- Strip thousands separators.") == 1
    assert "- Dates: ISO." in skill and "- Sum." in skill
    manifest = read_manifest(run_dir)
    assert manifest is not None
    counts = manifest.stages["consolidate"].counts
    assert counts["result_commit"] == summary.result_commit
    assert counts["final_patch_id"] == summary.final_patch_id
    assert repo.rev(f"t2s/{RUN}/result") == summary.result_commit


def _reply(*edits: dict, reasoning: str = "merged") -> MergeReply:
    return MergeReply.model_validate(
        {"reasoning": reasoning, "edits": list(edits), "changelog_entries": ["Merge"]}
    )


def test_min_support_drops_one_off_lessons(tmp_path: Path) -> None:
    repo, run_dir = make_run(tmp_path)
    a, b = lesson("- Recurring lesson."), lesson("- One-off lesson.")
    add_leaves(repo, run_dir, [leaf(a), leaf(a, why="again"), leaf(b)])
    with fake_model(keep_all) as model:
        summary = run_consolidation(
            run_dir, _config(merge_batch=5, min_support=2), llm_config=llm(tmp_path, model)
        )
    (record,) = read_merges(run_dir)
    assert record.forced and [e.id for e in record.edits] == [str(a.id)]
    assert any(d.edit_id == str(b.id) and "min-support 2" in d.reason for d in record.dropped)
    skill = git(repo.root, "show", f"{summary.result_commit}:{SKILL_REL}/SKILL.md")
    assert "- Recurring lesson." in skill and "- One-off lesson." not in skill


def test_conflicting_children_go_to_the_operator_with_hunks(tmp_path: Path) -> None:
    repo, run_dir = make_run(tmp_path)

    def replace(new: str) -> Edit:
        return Edit(
            file="SKILL.md", op="replace_in_section", old_text="- Check units.", content=new
        )

    x, y = replace("- Check units and scale."), replace("- Check units; convert first.")
    add_leaves(repo, run_dir, [leaf(x), leaf(y)])
    resolved = {
        "cited": [str(x.id), str(y.id)],
        "file": "SKILL.md",
        "op": "replace_in_section",
        "old_text": "- Check units.",
        "content": "- Check units and scale; convert before comparing.",
    }
    with fake_model([_reply(resolved)]) as model:
        summary = run_consolidation(run_dir, _config(), llm_config=llm(tmp_path, model))
        prompt = model.requests[0].messages[-1]["content"]
    assert "GIT CONFLICTS" in prompt and "- Check units and scale." in prompt
    assert "- Check units; convert first." in prompt
    (record,) = read_merges(run_dir)
    assert record.status == "merged" and record.conflicts[0].hunks == 1
    (edit,) = record.edits
    assert edit.support == 2 and edit.cited == [str(x.id), str(y.id)]
    skill = git(repo.root, "show", f"{summary.result_commit}:{SKILL_REL}/SKILL.md")
    assert "- Check units and scale; convert before comparing." in skill
    assert "<<<<<<<" not in skill


def _anchor_run(tmp_path: Path, reply: MergeReply) -> tuple[SkillRepo, Path, object]:
    repo, run_dir = make_run(tmp_path)
    p = Edit(file="SKILL.md", op="insert_after", target_text="- Check units.", content="- P.")
    q = Edit(
        file="SKILL.md", op="insert_after", target_text="Answer with a number.", content="- Q."
    )
    add_leaves(repo, run_dir, [leaf(p), leaf(q)])
    reply = MergeReply.model_validate(
        {
            **reply.model_dump(),
            "edits": [
                {**e, "cited": [str(p.id) if c == "P" else str(q.id) for c in e["cited"]]}
                for e in reply.model_dump()["edits"]
            ],
        }
    )
    with fake_model([reply]) as model:
        summary = run_consolidation(run_dir, _config(), llm_config=llm(tmp_path, model))
    return repo, run_dir, summary


def test_reanchor_unique_drift_is_moved_and_recorded(tmp_path: Path) -> None:
    drifted = {
        "cited": ["P"],
        "file": "SKILL.md",
        "op": "insert_after",
        "target_text": "-  Check   units.",
        "content": "- P, in general.",
    }
    repo, run_dir, summary = _anchor_run(tmp_path, _reply(drifted))
    (record,) = read_merges(run_dir)
    (moved,) = record.reanchored
    assert (moved.old, moved.new) == ("-  Check   units.", "- Check units.")
    assert record.edits[0].id == moved.edit_id
    skill = git(repo.root, "show", f"t2s/{RUN}/result:{SKILL_REL}/SKILL.md")
    assert "- Check units.\n- P, in general.\n" in skill


def test_reanchor_ambiguous_drift_is_dropped(tmp_path: Path) -> None:
    ambiguous = {
        "cited": ["P", "Q"],
        "file": "SKILL.md",
        "op": "insert_after",
        "target_text": "somewhere in the skill",
        "content": "- P and Q.",
    }
    kept = {
        "cited": ["Q"],
        "file": "SKILL.md",
        "op": "insert_after",
        "target_text": "Answer with a number.",
        "content": "- Q.",
    }
    repo, run_dir, summary = _anchor_run(tmp_path, _reply(ambiguous, kept))
    (record,) = read_merges(run_dir)
    assert record.status == "merged" and record.reanchored == []
    assert any(d.reason.startswith("anchor-ambiguous") for d in record.dropped)
    assert len(record.edits) == 1


def _four_leaves(tmp_path: Path) -> tuple[SkillRepo, Path, list[Edit]]:
    repo, run_dir = make_run(tmp_path)
    edits = [lesson(f"- Lesson {i}.") for i in range(4)]
    add_leaves(repo, run_dir, [leaf(e, why=f"lesson {i}") for i, e in enumerate(edits)])
    return repo, run_dir, edits


@pytest.mark.parametrize(
    "bad",
    [
        FaultKind.MALFORMED_JSON,
        FaultKind.TRUNCATED_JSON,
        "no json here",
    ],
)
def test_bad_replies_pass_children_up_then_the_forced_merge_takes_the_union(
    tmp_path: Path, bad: object
) -> None:
    repo, run_dir, edits = _four_leaves(tmp_path)
    with fake_model(lambda messages: bad) as model:
        summary = run_consolidation(
            run_dir, _config(merge_batch=2, max_levels=2), llm_config=llm(tmp_path, model)
        )
    records = read_merges(run_dir)
    assert [(r.level, r.status) for r in records] == [
        (1, "passed_up"),
        (1, "passed_up"),
        (2, "union"),
    ]
    assert all("invalid merge reply" in str(r.reason) for r in records[:2])
    assert records[2].forced and "fell back to the union" in str(records[2].reason)
    assert summary.passed_up == 2 and summary.union == 1 and summary.final_support == 4
    skill = git(repo.root, "show", f"t2s/{RUN}/result:{SKILL_REL}/SKILL.md")
    assert all(str(e.content) in skill for e in edits)


def test_a_failed_model_request_stops_the_consolidation_for_a_resume(tmp_path: Path) -> None:
    """A server down during consolidate was taken for a bad reply: every group was passed up
    and the final merge took the union, an S* no model merged, recorded done (a resume kept
    it) with the reason 'invalid merge reply: ... InternalServerError'."""
    repo, run_dir, edits = _four_leaves(tmp_path)
    down = llm(tmp_path, "fake/merger-down").model_copy(update={"max_retries": 0, "cache": False})
    failing = fake_model(lambda messages: FaultKind.AUTH, name="merger-down")
    refused = pytest.raises(ToolkitError, match="the merge operator's request failed")
    with failing, refused as failed:
        run_consolidation(run_dir, _config(merge_batch=2, max_levels=2), llm_config=down)
    assert "AuthenticationError" in str(failed.value) and "--resume" in str(failed.value)
    assert "result" not in repo.run_refs(RUN)
    with fake_model(keep_all, name="merger-down"):
        summary = run_consolidation(
            run_dir, _config(merge_batch=2, max_levels=2, resume=True), llm_config=down
        )
    assert [r.status for r in read_merges(run_dir)] == ["merged", "merged", "merged"]
    assert summary.final_support == 4


def test_merged_code_outside_a_fence_is_dropped(tmp_path: Path) -> None:
    """The real WikiTQ run's 1.5B merge operator wrote bare code into S*'s preamble."""
    repo, run_dir = make_run(tmp_path)
    add_leaves(repo, run_dir, [leaf(lesson("- A.")), leaf(lesson("- B."))])

    def operator(messages: list[dict]) -> MergeReply:
        pool = parse_pool_from_prompt(messages)
        good = {k: v for k, v in pool[0].items() if k not in ("id", "support")}
        bare = "df['g'] = df['Goals'].map(num)\nsel = df[df['g'] > 10]"
        return _reply(
            {**good, "cited": [pool[0]["id"]], "content": bare},
            {**good, "cited": [pool[1]["id"]], "content": "- Check the columns first."},
        )

    with fake_model(operator) as model:
        run_consolidation(run_dir, _config(merge_batch=2), llm_config=llm(tmp_path, model))
    (record,) = read_merges(run_dir)
    assert record.status == "merged" and len(record.edits) == 1
    assert any(d.reason.startswith("unfenced-code: 2 lines") for d in record.dropped)


def test_reply_with_more_edits_than_inputs_or_unknown_ids(tmp_path: Path) -> None:
    repo, run_dir = make_run(tmp_path)
    edits = [lesson(f"- Lesson {i}.") for i in range(5)]
    patches = [leaf(e, why=f"lesson {i}") for i, e in enumerate(edits[:3])]
    add_leaves(repo, run_dir, [*patches, leaf(edits[3], edits[4])])
    double = {str(edits[3].id), str(edits[4].id)}

    def operator(messages: list[dict]) -> MergeReply:
        pool = parse_pool_from_prompt(messages)
        ids = [e["id"] for e in pool]
        if "FINAL merge" in messages[-1]["content"]:
            return keep_all(messages)
        if double <= set(ids):  # 3 unique inputs: cite an unknown id, escape the skill
            (other,) = [e for e in pool if e["id"] not in double]
            good = {k: v for k, v in other.items() if k not in ("id", "support")}
            return _reply(
                {**good, "cited": ["deadbeef0000"], "content": "- Invented."},
                {**good, "cited": [str(edits[3].id)], "file": "../../README.md"},
                {**good, "cited": [other["id"]]},
            )
        extra = {k: v for k, v in pool[0].items() if k not in ("id", "support")}
        return _reply(*({**extra, "cited": ids[:1], "content": f"- Extra {i}."} for i in range(3)))

    with fake_model(operator) as model:
        run_consolidation(
            run_dir, _config(merge_batch=2, max_levels=2), llm_config=llm(tmp_path, model)
        )
    records = read_merges(run_dir)
    (first,) = [r for r in records if r.status == "passed_up"]
    (second,) = [r for r in records if r.level == 1 and r.status == "merged"]
    assert "3 edits for 2 unique inputs" in str(first.reason)
    assert len(second.edits) == 1 and second.edits[0].support == 1
    reasons = " | ".join(d.reason for d in second.dropped)
    assert "cites unknown edit ids: deadbeef0000" in reasons
    assert "path-escape" in reasons or "bad-path" in reasons
    assert reasons.count("left out by the merge operator") == 2
    assert records[-1].forced and records[-1].status == "merged"


def test_over_budget_result_is_retried_once_with_the_budget(tmp_path: Path) -> None:
    repo, run_dir, edits = _four_leaves(tmp_path)
    cited = [str(e.id) for e in edits]
    bloated = {
        "cited": cited, "file": "SKILL.md", "op": "append_to_section",
        "target_section": "Pitfalls", "content": "\n".join(f"- Detail {i}." for i in range(9)),
    }  # fmt: skip
    short = {**bloated, "content": "- Lessons 0-3, as one principle."}
    with fake_model([_reply(bloated), _reply(short)]) as model:
        run_consolidation(
            run_dir,
            _config(budgets=Budgets(skill_md_lines=21)),
            llm_config=llm(tmp_path, model),
        )
        retry = model.requests[1].messages[-1]["content"]
    assert "over the size budget" in retry and "21" in retry
    (record,) = read_merges(run_dir)
    assert record.attempts == 2 and record.status == "merged"
    assert record.edits[0].support == 4


def test_git_strategy_takes_the_union_of_clean_groups_without_a_model(tmp_path: Path) -> None:
    repo, run_dir = make_run(tmp_path)
    add_leaves(
        repo, run_dir, [leaf(lesson("- Pitfall.")), leaf(lesson("- Output rule.", "Output"))]
    )
    with fake_model([]) as model:
        summary = run_consolidation(
            run_dir, _config(strategy="git"), llm_config=llm(tmp_path, model)
        )
        assert model.calls == 0
    (record,) = read_merges(run_dir)
    assert record.status == "union" and record.model is None and record.conflicts == []
    skill = git(repo.root, "show", f"{summary.result_commit}:{SKILL_REL}/SKILL.md")
    assert "- Pitfall." in skill and "- Output rule." in skill


def test_children_that_all_fail_the_guardrails(tmp_path: Path) -> None:
    repo, run_dir, edits = _four_leaves(tmp_path)
    broken = Edit(file="SKILL.md", op="insert_after", target_text="not in the skill", content="x")
    for pid in list(sorted(p.stem for p in (run_dir / "patches").glob("*.json")))[:2]:
        patch = read_patch(run_dir, pid)
        save_patch(run_dir, patch.model_copy(update={"edits": [broken]}))
    with fake_model(keep_all) as model:
        summary = run_consolidation(
            run_dir, _config(merge_batch=2), llm_config=llm(tmp_path, model)
        )
    first, second, final = read_merges(run_dir)
    assert first.status == "failed" and first.reason == "every child edit failed the guardrails"
    assert any("anchor-missing" in d.reason for d in first.dropped)
    assert second.status == "merged" and final.status == "union" and summary.final_support == 2


def test_resume_redoes_only_unfinished_groups(tmp_path: Path) -> None:
    repo, run_dir, edits = _four_leaves(tmp_path)
    with fake_model(keep_all, name="resumed-merger") as model:
        first = run_consolidation(run_dir, _config(merge_batch=2), llm_config=llm(tmp_path, model))
        with pytest.raises(ToolkitError, match="already consolidated"):
            run_consolidation(run_dir, _config(merge_batch=2), llm_config=llm(tmp_path, model))
    # as if killed after level 1: the last line and the level-2 refs never got written
    path = run_dir / MERGES_FILE
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    # ... or killed after writing a level-2 commit (here: a different one) but not its line
    level1 = repo.rev(f"t2s/{RUN}/L1/g0001")
    git(repo.root, "update-ref", f"refs/heads/t2s/{RUN}/L2/g0001", level1)
    git(repo.root, "update-ref", "-d", f"refs/heads/t2s/{RUN}/result")
    with fake_model(keep_all, name="resumed-merger") as model:
        again = run_consolidation(
            run_dir,
            _config(merge_batch=2, resume=True),
            llm_config=llm(tmp_path, model).model_copy(update={"cache": False}),
        )
        assert model.calls == 1
    assert again.resumed == 2 and again.result_commit == first.result_commit
    assert again.final_patch_id == first.final_patch_id
    assert len(read_merges(run_dir)) == 3


def test_graph_shows_every_patch_and_merge_and_provenance_reaches_trajectories(
    tmp_path: Path,
) -> None:
    repo, run_dir = make_run(tmp_path)
    a = lesson("- Strip thousands separators.")
    add_leaves(repo, run_dir, [leaf(a, why=f"leaf {i}") for i in range(3)] + [leaf(lesson("- B."))])
    with fake_model(keep_all) as model:
        run_consolidation(run_dir, _config(merge_batch=2), llm_config=llm(tmp_path, model))
    graph = git(repo.root, "log", "--graph", "--format=%s", f"t2s/{RUN}/result")
    for subject in ["leaf 0", "leaf 1", "leaf 2", "lesson", "L1 g0001", "L1 g0002", "L2 g0001"]:
        assert subject in graph
    lines = skill_lines(repo, f"{SKILL_REL}/SKILL.md", f"t2s/{RUN}/result", run_dir)
    (line,) = [x for x in lines if x.text == "- Strip thousands separators."]
    assert line.support == 3 and line.trajectories == ["t0", "t1", "t2"]
    assert line.edit_id == str(a.id) and line.merge is not None and len(line.patches) == 3
    base_line = next(x for x in lines if x.text == "## Pitfalls")
    assert base_line.edit_id is None and base_line.kind is None


def test_no_patches_is_one_clear_error(tmp_path: Path) -> None:
    repo, run_dir = make_run(tmp_path)
    with pytest.raises(ToolkitError, match="no patches to consolidate"):
        run_consolidation(run_dir, _config())


def test_repo_consolidate_passes_declined_groups_up(tmp_path: Path) -> None:
    repo, run_dir = make_run(tmp_path)
    sections = ["Workflow", "Pitfalls", "Output"]
    ids = add_leaves(repo, run_dir, [leaf(lesson(f"- In {s}.", s)) for s in sections])
    commits = sorted(ids.values())
    calls: list[int] = []

    def decline_first_group_once(merges: list[GroupMerge]) -> list[Resolution]:
        calls.append(len(merges))
        return [Resolution(passed_up=len(calls) == 1 and i == 0) for i in range(len(merges))]

    result = consolidate(
        repo, RUN, commits, timestamp=1, group_size=2, resolve=decline_first_group_once
    )
    refs = repo.run_refs(RUN)
    assert calls == [2, 2, 1] and refs[f"t2s/{RUN}/result"] == result
    assert f"t2s/{RUN}/L1/g0001" not in refs and f"t2s/{RUN}/L1/g0002" in refs
    skill = git(repo.root, "show", f"{result}:{SKILL_REL}/SKILL.md")
    assert all(f"- In {s}." in skill for s in sections)


def test_citing_every_input_edit_counts_only_the_ones_copied() -> None:
    """The real 1.5B cited all input edits for each output edit that copied one of them."""
    from toolkit.consolidate.nodes import cite, leaf_node, pool_edits
    from toolkit.patch import Patch

    def edit(content: str) -> Edit:
        made = Edit(op="append_to_section", file="SKILL.md", target_section="s/a", content=content)
        return made.model_copy(update={"id": made.content_hash()})

    def leaf(pid: str, content: str) -> Patch:
        return Patch(id=pid, edits=[edit(content)], sources=[pid], support=1)

    nodes = [
        leaf_node(leaf("p1", "Convert numbers with num() before sorting."), "c1"),
        leaf_node(leaf("p2", "Match names case-insensitively."), "c2"),
        leaf_node(leaf("p3", "Print the rows you selected."), "c3"),
    ]
    pool = pool_edits(nodes)
    every = list(pool.edits)
    copy = edit("- Match names   case-insensitively.")
    got = cite(pool, copy, every)
    assert (got.sources, got.support) == (["p2"], 1)
    assert got.cited == [nodes[1].patch.edits[0].id]
    # A generalisation copies none of them: its citations stand.
    general = edit("Check every value you compare or print.")
    assert cite(pool, general, every).support == 3
    # Citing a subset is a choice: taken as given.
    chosen = [nodes[0].patch.edits[0].id, nodes[1].patch.edits[0].id]
    assert cite(pool, copy, chosen).support == 2


def test_the_union_folds_an_added_text_another_added_edit_holds() -> None:
    """The real WikiTQ run's forced union appended one line twice: alone (a leaf passed up)
    and inside an edit a lower merge had made from a leaf with the same line."""
    from toolkit.consolidate.nodes import leaf_node, pool_edits, union_candidates
    from toolkit.patch import Patch

    def edit(content: str, section: str = "s/a", op: str = "append_to_section") -> Edit:
        old = "Print it." if op == "replace_in_section" else None
        made = Edit(op=op, file="SKILL.md", target_section=section, content=content, old_text=old)
        return made.model_copy(update={"id": made.content_hash()})

    line = "If a column header is missing, check the CSV."
    merged = edit(f"Print the columns first.\n\n{line}\n")
    alone, again = edit(line), edit(f"  {line.lower()}  ")  # spaces and case aside: equal
    elsewhere, replace = edit(line, section="s/b"), edit(line, op="replace_in_section")
    patches = [("p1", merged), ("p2", alone), ("p3", again), ("p4", elsewhere), ("p5", replace)]
    nodes = [
        leaf_node(Patch(id=pid, edits=[e], sources=[pid], support=1), f"c{pid}")
        for pid, e in patches
    ]
    got = union_candidates(pool_edits(nodes))
    assert [cited for _fields, cited in got] == [
        [merged.id, alone.id, again.id],  # both folded into the edit that holds them
        [elsewhere.id],  # another section: not the same place
        [replace.id],  # a replacement is no added text
    ]
    assert got[0][0]["content"] == merged.content
