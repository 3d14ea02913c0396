"""The generic stage runner: status in the manifest, resume by unit id, failures recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel

from toolkit.errors import ToolkitError
from toolkit.runs import StageSpec, read_manifest, run_stage


class Item(BaseModel):
    id: str
    value: int


def spec(run_dir: Path, saved: list[int], finished: set[str], fail_on: int = -1) -> StageSpec:
    async def work(unit: Item) -> int:
        if unit.value == fail_on:
            raise RuntimeError(f"unit {unit.id} broke")
        return unit.value * 10

    return StageSpec(
        run_dir=run_dir,
        name="square",
        label="square",
        config={"k": 1},
        units=[Item(id=f"u{i}", value=i) for i in range(4)],
        finished=finished,
        work=work,
        save=saved.append,
        concurrency=2,
        progress=False,
    )


def test_runs_unfinished_units_and_records_done(tmp_path: Path) -> None:
    saved: list[int] = []
    new = asyncio.run(run_stage(spec(tmp_path, saved, {"u1"}), lambda r: {"ran": len(r)}))
    assert new == [0, 20, 30] and sorted(saved) == [0, 20, 30]
    stage = read_manifest(tmp_path).stages["square"]  # type: ignore[union-attr]
    assert stage.status == "done" and stage.counts == {"ran": 3} and stage.config == {"k": 1}
    # Nothing left to do (a replay, an ablation's subsample): the record of the work stands
    # (a re-import recorded "imported: 0"; an ablation's re-evaluation took 0 s).
    seen: list[list[int]] = []
    again = spec(tmp_path, saved, {"u0", "u1", "u2", "u3"})
    assert asyncio.run(run_stage(again, lambda r: seen.append(r) or {"ran": len(r)})) == []
    assert seen == [[]]  # the stage's own figures are still computed
    assert read_manifest(tmp_path).stages["square"] == stage  # type: ignore[union-attr]


def test_a_failing_unit_marks_the_stage_failed(tmp_path: Path) -> None:
    saved: list[int] = []
    with pytest.raises(RuntimeError, match="u2 broke"):
        asyncio.run(run_stage(spec(tmp_path, saved, set(), fail_on=2), lambda r: {}))
    stage = read_manifest(tmp_path).stages["square"]  # type: ignore[union-attr]
    assert stage.status == "failed" and stage.error == "unit u2 broke"
    assert stage.counts["units"] == 4 and stage.counts["finished"] == len(saved)


def test_a_stage_whose_process_died_reads_as_interrupted(tmp_path: Path) -> None:
    """A SIGKILL (a closed session) left the real WikiTQ run marked running for good."""
    import subprocess
    import sys

    from toolkit.runs import update_stage

    update_stage(tmp_path, "evolve", status="running", config={})
    live = read_manifest(tmp_path)
    assert live is not None and live.stages["evolve"].status == "running"  # this process
    assert live.stages["evolve"].pid is not None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    update_stage(tmp_path, "evolve", pid=int(dead.stdout))
    gone = read_manifest(tmp_path).stages["evolve"]  # type: ignore[union-attr]
    assert gone.status == "interrupted" and f"pid {int(dead.stdout)}" in (gone.error or "")
    update_stage(tmp_path, "evolve", status="running", pid=int(dead.stdout), host="elsewhere")
    elsewhere = read_manifest(tmp_path).stages["evolve"]  # type: ignore[union-attr]
    assert elsewhere.status == "running"  # no way to tell from here
    update_stage(tmp_path, "evolve", status="done")
    done = read_manifest(tmp_path).stages["evolve"]  # type: ignore[union-attr]
    assert done.status == "done" and done.pid is None and done.host is None
    assert '"pid"' not in (tmp_path / "manifest.json").read_text()  # no noise once ended


def test_stage_times_count_each_piece_of_work_once() -> None:
    """Found by a new-user trial: after `ablate`, the PR body showed the example run's S0 and
    S* evaluations as 0 s and 1 s (its replays rewrote them) and the app summed nested
    stages into 12,883 s for a run of about 7,500."""
    from toolkit.runs import StageRecord, stage_times

    def record(start: str, end: str | None, **counts: object) -> StageRecord:
        day = "2026-12-06T"
        return StageRecord(
            status="done" if end else "running",
            started_at=f"{day}{start}+00:00",
            ended_at=f"{day}{end}+00:00" if end else None,
            counts=counts,
        )

    evolve_stages = {
        "rollout": {"status": "done", "wall_s": 600.0},
        "eval-s0": {"status": "done", "wall_s": 900.0},
        "eval-none": {"status": "pending", "wall_s": 0.0},
    }
    stages = {
        "evolve": record("10:00:00", "11:00:00", stages=evolve_stages),
        "rollout": record("10:00:00", "10:10:00"),
        "eval:test:abc": record("11:30:00", "11:30:01"),  # a replay inside attribute
        "attribute": record("11:00:00", "12:00:00"),
    }
    rows = [(t.name, t.seconds) for t in stage_times(stages)]
    assert rows == [("rollout", 600.0), ("eval-s0", 900.0), ("attribute", 3600.0)]
    running = stage_times({"eval:test:x": record("09:00:00", None)})
    assert [(t.name, t.status, t.seconds) for t in running] == [("eval:test:x", "running", None)]


def test_an_invalid_manifest_names_its_fields(tmp_path: Path) -> None:
    """It said "2 validation errors for Manifest" and no field (a new user's report)."""
    from toolkit.errors import ToolkitError

    (tmp_path / "manifest.json").write_text(
        '{"schema_version": 1, "run_id": 5, "created_at": "x", "stages": {"a": {"status": "odd"}}}'
    )
    with pytest.raises(ToolkitError) as err:
        read_manifest(tmp_path)
    message = str(err.value)
    assert "run_id: Input should be a valid string" in message
    assert "stages.a.status: Input should be " in message


def test_a_run_folder_under_a_file_names_the_file(tmp_path: Path) -> None:
    """A kill trial: --runs-dir afile/sub blamed an invalid manifest."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ToolkitError, match=r"afile is a file, not a folder: the run folder"):
        read_manifest(tmp_path / "afile" / "sub" / "r1")
