"""What attribution needs to know about a finished run: its repository, skill and final patch.

A run folder (``runs/<run-id>/``) records, per the run-file contract, the skill repository and
the skill folder in a stage's config (``repo``, ``skill_path``), the final patch id and result
commit in the ``consolidate`` stage's counts, the patches in ``patches/<id>.json`` and the
consolidation tree in ``merges.jsonl``. :func:`open_run` gathers them into a :class:`RunContext`;
options given by the caller win over what the manifest says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.errors import RepoError, ToolkitError
from toolkit.patch import Patch
from toolkit.repo import SkillRepo, open_run_repo
from toolkit.repo.trailers import parse_trailers
from toolkit.runs import REFS_BUNDLE, Manifest, read_jsonl_dicts, read_manifest
from toolkit.skill import Skill
from toolkit.trajectory import Trajectory, read_trajectories, skill_commit

PATCHES_DIR = "patches"
MERGES_FILE = "merges.jsonl"
ANALYSES_FILE = "analyses.jsonl"
EVAL_TRAJECTORIES = "evals/trajectories.jsonl"
#: Manifest stages that write a run's refs (S0 snapshot, patches, S*).
EVOLVING_STAGES = frozenset({"analyse", "consolidate", "evolve"})

Origin = Literal["eval", "rollout", "all"]
"""Which trajectories of a run: its evaluations, its rollouts (the evolve split) or both."""


class AttributionError(ToolkitError):
    """Attribution cannot run on this run as asked (missing result, unknown edit...)."""


class EditSupport(BaseModel):
    """Which leaf patches (and trajectories) stand behind one edit of the final patch."""

    edit_id: str
    sources: list[str] = Field(description="Leaf patch ids behind the edit.")
    support: int = Field(description="Number of leaf patches behind the edit.")
    cited: list[str] = Field(default_factory=list, description="Child edit ids it came from.")
    trajectories: list[str] = Field(default_factory=list, description="Their trajectories.")
    outcomes: dict[str, str] = Field(
        default_factory=dict, description="Trajectory id -> 'pass' / 'fail' of the analysed run."
    )


class RunContext(BaseModel):
    """A run's parts that attribution reads: refs, skill folder, final patch, support."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_dir: Path
    run: str = Field(description="Run id (refs live under refs/heads/t2s/<run>/).")
    repo_path: Path
    skill_path: str = Field(description="Skill folder, relative to the repository root.")
    base: str = Field(description="Commit of S0 (t2s/<run>/base).")
    result: str = Field(description="Commit of S* (t2s/<run>/result).")
    final_patch: Patch = Field(description="The consolidated patch that turns S0 into S*.")
    support: dict[str, EditSupport] = Field(description="Edit id -> its support.")
    manifest: Manifest | None = None

    def ref(self, name: str) -> str:
        """The short ref name ``t2s/<run>/<name>``."""
        return f"t2s/{self.run}/{name}"


def resolve_run_dir(run: str | Path) -> Path:
    """A run folder given as a path, or as a run id under ``./runs``."""
    path = Path(run)
    if (path / "manifest.json").is_file():
        return path
    if (Path("runs") / str(run) / "manifest.json").is_file():
        return Path("runs") / str(run)
    if not path.exists() and not (Path("runs") / str(run)).exists():
        raise AttributionError(f"run folder {run} does not exist: give runs/<run-id>")
    raise AttributionError(f"{run} is not a run folder (no manifest.json): give runs/<run-id>")


def stage_value(manifest: Manifest | None, key: str) -> Any:
    """``key`` from the first manifest stage whose config (or counts) holds it, else None.

    The contract records ``repo`` and ``skill_path`` in "a stage's config" without naming it.
    """
    if manifest is None:
        return None
    for stage in manifest.stages.values():
        for part in (stage.config, stage.counts):
            if part.get(key) not in (None, ""):
                return part[key]
    return None


def load_run_patch(run_dir: Path, patch_id: str) -> Patch:
    """``patches/<patch_id>.json`` of the run."""
    path = run_dir / PATCHES_DIR / f"{patch_id}.json"
    try:
        return Patch.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise AttributionError(f"{path} is missing: the run's final patch is not saved") from None
    except ValidationError as exc:
        raise AttributionError(f"{path} is not a patch: {exc.errors()[0]['msg']}") from None


def final_patch_id(manifest: Manifest | None, store: SkillRepo, result: str) -> str | None:
    """The id of the patch S* applies: the consolidate counts' ``final_patch_id``, else the
    result commit's ``Trace2Skill-Patch`` trailer; None when neither names one."""
    patch_id = stage_value(manifest, "final_patch_id")
    if patch_id is None:
        trailers = parse_trailers(store.messages([result])[0])
        patch_id = trailers.patch if trailers else None
    return None if patch_id is None else str(patch_id)


def _infer_skill_path(repo: SkillRepo, base: str, result: str) -> str:
    changed = repo.git.out("diff", "--name-only", base, result).splitlines()
    folders = {
        "/".join(p.split("/")[:2]) for p in changed if p.startswith("skills/") and p.count("/") >= 2
    }
    if len(folders) != 1:
        raise AttributionError(
            "cannot tell which skill folder the run evolved: pass --skill-path skills/<name>"
        )
    return folders.pop()


def edit_support(run_dir: Path, repo: SkillRepo, run: str, patch: Patch) -> dict[str, EditSupport]:
    """Support of each edit of ``patch``: from its ``merges.jsonl`` line, else the patch itself.

    Leaf patches lead to trajectories through ``analyses.jsonl`` (or, failing that, the patch
    commits' trailers), so each edit is joinable to the outcomes behind it.
    """
    merge_edits: dict[str, dict[str, Any]] = {}
    merges = read_jsonl_dicts(run_dir / MERGES_FILE)
    for row in merges:
        if row.get("patch_id") == patch.id:
            merge_edits = {e["id"]: e for e in row.get("edits") or [] if "id" in e}
    if (run_dir / MERGES_FILE).is_file() and not merge_edits and len(set(patch.sources)) > 1:
        # Without its merge line every edit would read the whole patch's support.
        raise AttributionError(
            f"{run_dir / MERGES_FILE} has no line for the final patch {patch.id} (a torn last "
            "line?), so the support of each edit is unknown"
        )
    trajectory_of: dict[str, tuple[str, str]] = {}
    for row in read_jsonl_dicts(run_dir / ANALYSES_FILE):
        if row.get("patch_id") and row.get("trajectory_id"):
            trajectory_of[row["patch_id"]] = (row["trajectory_id"], row.get("outcome") or "")
    default_sources = list(patch.sources) or [patch.id or ""]
    out: dict[str, EditSupport] = {}
    for edit in patch.edits:
        row = merge_edits.get(edit.id or "")
        sources = list(row["sources"]) if row and row.get("sources") else default_sources
        cited = list(row.get("cited") or []) if row else []
        out[edit.id or ""] = EditSupport(
            edit_id=edit.id or "",
            sources=sources,
            support=int(row["support"]) if row and row.get("support") else len(set(sources)),
            cited=cited,
        )
    leaves = sorted({s for e in out.values() for s in e.sources} - set(trajectory_of))
    refs = repo.run_refs(run)
    commits = [refs[f"t2s/{run}/patch/{p}"] for p in leaves if f"t2s/{run}/patch/{p}" in refs]
    for message in repo.messages(commits) if commits else []:
        t = parse_trailers(message)
        if t is not None and t.patch and t.trajectory:
            trajectory_of[t.patch] = (t.trajectory, t.outcome or "")
    for item in out.values():
        found = [trajectory_of[s] for s in item.sources if s in trajectory_of]
        item.trajectories = sorted({t for t, _ in found})
        item.outcomes = {t: o for t, o in found if o}
    return out


def refresh_bundle(store: SkillRepo, context: RunContext) -> None:
    """Write the run's refs to its ``refs.bundle`` again, as evolve's bundle stage does, after
    ablate or prune added refs: a clone that imports the bundle, and ``pr --provenance`` from
    it, get them too."""
    from toolkit.repo import export_bundle

    export_bundle(store, context.run, context.run_dir / REFS_BUNDLE)


def _never_evolved(run_dir: Path, manifest: Manifest | None, run: str) -> str | None:
    """Why a plain rollout (or eval) run has nothing to attribute, else None.

    Such a run snapshotted no S0 and made no S*, so it has no refs anywhere to import (the
    message asked to import a refs.bundle the run never had).
    """
    stages = set(manifest.stages) if manifest else set()
    if (run_dir / REFS_BUNDLE).is_file() or stages & EVOLVING_STAGES:
        return None
    return (
        f"run {run!r} was never evolved (no analyse, consolidate or evolve stage): it has no "
        f"result to attribute; analyse and consolidate it first (trace2skill analyse "
        f"{run_dir}), or give an evolved run"
    )


def open_run(
    run_dir: str | Path,
    *,
    repo: str | Path | None = None,
    skill_path: str | None = None,
) -> tuple[RunContext, SkillRepo]:
    """Read a finished run; returns its context and the open skill repository (close it).

    Raises:
        AttributionError: no manifest, no result ref, no final patch, unknown skill folder.
    """
    run_dir = resolve_run_dir(run_dir)
    manifest = read_manifest(run_dir)
    candidates = [str(c) for c in (stage_value(manifest, "run"), manifest and manifest.run_id) if c]
    candidates.append(run_dir.resolve().name)
    never_evolved = _never_evolved(run_dir, manifest, candidates[0])
    # --repo, else this repository when it holds the run (a clone that imported its bundle),
    # else the recorded one if it is here: writes (prune, ablate) go where the user looks.
    try:
        store = open_run_repo(repo, stage_value(manifest, "repo"), candidates)
    except RepoError:
        if never_evolved:  # the run's own state, not the repository, is what to fix
            raise AttributionError(never_evolved) from None
        raise
    try:
        runs = store.runs()
        run = next((c for c in candidates if c in runs), None)
        if run is None:
            if never_evolved:
                raise AttributionError(never_evolved)
            bundle = run_dir / REFS_BUNDLE
            how = (
                f"import them with `trace2skill bundle import {bundle}`"
                if bundle.is_file()
                else "the run folder has no refs.bundle to import"
            )
            raise AttributionError(
                f"{store.root} has no refs of run {candidates[0]!r}: {how}, or pass --repo "
                "(the skill repository of the run)"
            )
        refs = store.run_refs(run)
        base, result = refs.get(f"t2s/{run}/base"), refs.get(f"t2s/{run}/result")
        if base is None:
            raise AttributionError(f"run {run!r} has no base (t2s/{run}/base) in {store.root}")
        if result is None:
            from toolkit.evolve import no_result_reason

            # As evolve --resume judges it: a run whose analyses kept nothing is a dead end.
            raise AttributionError(
                f"run {run!r} has no result (t2s/{run}/result): {no_result_reason(run_dir)}"
            )
        if stage_value(manifest, "consolidation") == "sequential":
            raise AttributionError(
                f"run {run!r} was consolidated sequentially (the Seq-B baseline: a chain "
                f"t2s/{run}/seq/<step>, each step's edits applied to the skill the step before "
                "made): S* has no single patch on S0, so its edits cannot be ablated, counted "
                "or pruned one by one here. Its summary.json and PR body (trace2skill pr "
                f"--dry-run) list each step's edits with their support; `git log "
                f"--first-parent t2s/{run}/result` shows the steps"
            )
        patch_id = final_patch_id(manifest, store, result)
        if patch_id is None:
            raise AttributionError(
                f"{run_dir}: no final patch id (manifest consolidate counts final_patch_id)"
            )
        patch = load_run_patch(run_dir, str(patch_id))
        skill_rel = skill_path or stage_value(manifest, "skill_path")
        skill_rel = (
            str(skill_rel).strip("/") if skill_rel else _infer_skill_path(store, base, result)
        )
        context = RunContext(
            run_dir=run_dir,
            run=run,
            repo_path=store.root,
            skill_path=skill_rel,
            base=base,
            result=result,
            final_patch=patch,
            support=edit_support(run_dir, store, run, patch),
            manifest=manifest,
        )
    except BaseException:
        store.close()
        raise
    return context, store


def load_version(store: SkillRepo, context: RunContext, rev: str) -> tuple[Skill, str]:
    """The run's skill folder at ``rev`` and its version id (the folder's git tree id)."""
    skill = store.load_skill(rev, context.skill_path)
    return skill, skill_commit(skill)


def read_run_trajectories(run_dir: Path, origin: Origin = "all") -> list[Trajectory]:
    """The run's trajectories: its rollouts, its evaluations (``evals/``) or both (``all``)."""
    out: list[Trajectory] = []
    paths = {"rollout": run_dir / "trajectories.jsonl", "eval": run_dir / EVAL_TRAJECTORIES}
    for name, path in paths.items():
        if origin in (name, "all") and path.is_file():
            out.extend(read_trajectories(path).records)
    return out


def held_out_split(run_dir: Path) -> str:
    """The split the run evaluates S0 and S* on: evolve's test split, else the ablation's.

    S0 also has rollouts on the evolve split and S* has none, so figures that compare the
    two must come from this split's evaluations to be on the same tasks.
    """
    manifest = read_manifest(run_dir)
    for stage, key in (("evolve", "test_split"), ("attribute", "split")):
        record = manifest.stages.get(stage) if manifest else None
        if record is not None and record.config.get(key):
            return str(record.config[key])
    return "test"


def version_labels(store: SkillRepo, context: RunContext) -> dict[str, tuple[str, Skill]]:
    """Version id -> (label, skill) of S0, S* and the run's ablate/only versions."""
    out: dict[str, tuple[str, Skill]] = {}
    refs = store.run_refs(context.run)
    named = [("S0", context.base), ("S*", context.result)] + sorted(
        (name.split("/", 2)[2], oid)
        for name, oid in refs.items()
        if name.split("/")[2:3] in (["ablate"], ["only"], ["prune"])
    )
    for label, rev in named:
        skill, commit = load_version(store, context, rev)
        out.setdefault(commit, (label, skill))
    return out
