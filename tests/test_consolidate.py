from __future__ import annotations

from pathlib import Path

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
    ConsolidateConfig,
    plan_balanced,
    read_merges,
    read_patch,
    run_consolidation,
)
from toolkit.llm import fake_model
from toolkit.rollout import read_manifest


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
