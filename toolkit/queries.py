"""Ready-made questions over the run index (see :func:`toolkit.index.connect`).

Each function takes a DuckDB connection with the index views and returns pydantic rows, so the
CLI, the app and notebooks share one definition of "pass rate by skill version" and friends.
"""

from __future__ import annotations

import duckdb
from pydantic import BaseModel, Field

from toolkit.evaluate import EvalRecord
from toolkit.stats import bootstrap_seed, pass_rate


class SkillPassRate(BaseModel):
    """Pass rate of one skill version (x model x suite) over one set of trajectories: one
    run's rollouts or evaluations on one split."""

    suite: str
    run_id: str
    origin: str = Field(description="rollout | eval.")
    split: str
    skill_commit: str
    model: str
    protocol: str = Field(description="The agent's protocol (code, json, tools, plain).")
    delivery: str = Field(description="How the skill reached the agent (system, ..., none).")
    n: int
    passed: int
    rate: float | None
    ci_low: float = Field(
        description="Bootstrap 95% percentile interval, low end (Wilson's at 0/n or n/n)."
    )
    ci_high: float = Field(description="The same interval, high end.")
    wilson_low: float
    wilson_high: float


class FlippedTask(BaseModel):
    """A task that passed under one skill version and failed under the other."""

    suite: str
    task_id: str
    model: str
    protocol: str | None = Field(None, description="The agent's protocol (both sides').")
    seed: int = Field(0, description="The run seed (both sides').")
    rate_a: float = Field(description="Pass rate of the task's trajectories under version A.")
    rate_b: float = Field(description="Pass rate of the task's trajectories under version B.")
    direction: str = Field(description="'fixed' (A failed, B passed) or 'broken'.")


class SectionUsage(BaseModel):
    """How often one skill section or file was used under one skill version."""

    skill_commit: str
    ref: str
    kind: str
    uses: int = Field(description="Uses (a trajectory can use a section more than once).")
    trajectories: int = Field(description="Trajectories that used it.")
    pass_rate: float | None = Field(description="Pass rate of those trajectories.")


class ModelCost(BaseModel):
    """Cost and latency of one model over the indexed LLM calls."""

    model: str
    calls: int
    cache_hits: int
    errors: int
    tokens_in: int = Field(description="Prompt tokens of the calls that reported them.")
    tokens_out: int = Field(description="Completion tokens of the calls that reported them.")
    tokens_unreported: int = Field(
        description="Calls whose token counts the provider did not report (NULL), left out "
        "of the two sums."
    )
    cost_usd: float = Field(description="Cost in USD of the calls that were priced.")
    cost_unpriced: int = Field(
        description="Calls whose cost is unknown (NULL: no price for the model, no usage "
        "reported), left out of cost_usd rather than counted as $0."
    )
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float


def pass_rate_by_skill(
    con: duckdb.DuckDBPyConnection, *, origin: str | None = None, seed: int | None = None
) -> list[SkillPassRate]:
    """Pass rate with 95% CIs per (suite, run, origin, split, skill version, model, protocol,
    delivery).

    Runs, origins and splits are never pooled: a second run of the same tasks is not more
    evidence (pooling doubled n and narrowed the CI), and S0's rollouts on the evolve split
    are other tasks than the evaluations on the test split. Nor are protocols or deliveries:
    they are different agents.

    ``origin``: ``rollout`` or ``eval`` to count only those trajectories; None lists both.
    ``seed``: the bootstrap seed; None: the trajectories' run seed (:func:`bootstrap_seed`),
    as their eval file and ``summary.json`` drew it.
    """
    where, params = ("WHERE origin = ?", [origin]) if origin else ("", [])
    rows = con.execute(
        f"""SELECT suite, run_id, origin, split, skill_commit, model, protocol, delivery,
                   list(passed ORDER BY id), list(DISTINCT seed)
            FROM trajectories {where}
            GROUP BY ALL
            ORDER BY suite, skill_commit, model, run_id, origin, split, protocol, delivery""",
        params,
    ).fetchall()
    out = []
    for suite, run_id, kind, split, commit, model, protocol, delivery, outcomes, seeds in rows:
        rate = pass_rate(outcomes, seed=bootstrap_seed(seeds) if seed is None else seed)
        out.append(
            SkillPassRate(
                suite=suite,
                run_id=run_id,
                origin=kind,
                split=split,
                skill_commit=commit,
                model=model,
                protocol=protocol,
                delivery=delivery,
                n=rate.n,
                passed=rate.passed,
                rate=rate.rate,
                ci_low=rate.ci.low,
                ci_high=rate.ci.high,
                wilson_low=rate.wilson.low,
                wilson_high=rate.wilson.high,
            )
        )
    return out


#: What one condition is: one run's trajectories of one origin, suite and split under one
#: protocol, skill version, model and delivery (another protocol or delivery is another agent).
CONDITION_COLUMNS = ("run_id", "origin", "suite", "split", "protocol", "skill_commit",
                     "delivery", "model")  # fmt: skip

#: The filter of :func:`condition_rates`: one origin, suite and split, or any.
_SELECTION = """($origin IS NULL OR origin = $origin)
                AND ($suite IS NULL OR suite = $suite) AND ($split IS NULL OR split = $split)"""


def _ranked(where: str) -> str:
    """The trajectories matching ``where``, each with its ``recency`` among the trajectories of
    its condition, task and seed (1: the latest). A run evaluated again after its agent changed
    (another fingerprint, so another trajectory id) holds a task twice; the latest is the one
    its eval file keeps, and ``recency`` > 1 marks the ones a condition leaves out."""
    return f"""SELECT *, row_number() OVER (
                   PARTITION BY {", ".join(CONDITION_COLUMNS)}, task_id, seed
                   ORDER BY ended_at DESC, id DESC) AS recency
               FROM trajectories WHERE {where}"""


class ConditionRate(BaseModel):
    """The figures of one condition (see :data:`CONDITION_COLUMNS`): pass rate with its 95%
    CI, time, tokens and replies per task, and how its tasks ended."""

    id: str = Field(description="The condition's id: its key fields joined by ':' (model last).")
    run_id: str
    origin: str = Field(description="rollout | eval.")
    suite: str
    split: str
    protocol: str = Field(description="The agent's protocol (code, json, tools, plain).")
    skill_commit: str = Field(description="The skill version's tree id; 'none': no skill.")
    skill_name: str | None = Field(description="The skill's name (None: no skill).")
    model: str
    delivery: str = Field(description="How the skill reached the agent (system, ..., none).")
    n: int = Field(description="Tasks (task, seed pairs), one trajectory each: the latest.")
    passed: int
    rate: float | None
    ci_low: float = Field(
        description="Bootstrap 95% percentile interval, low end (Wilson's at 0/n or n/n)."
    )
    ci_high: float = Field(description="The same interval, high end.")
    seconds_per_task: float | None = Field(
        description="Mean wall seconds over the tasks with no reply from the response cache "
        "(a replayed reply costs no model time); None when every task was replayed."
    )
    seconds_median: float | None = Field(description="Median of the same seconds.")
    replayed: int = Field(description="Tasks with at least one reply from the response cache.")
    tokens_per_task: float | None = Field(
        description="Mean prompt + completion tokens over the tasks that reported them (None: "
        "none did)."
    )
    tokens_unreported: int = Field(0, description="Tasks whose provider reported no counts.")
    replies_per_task: float = Field(description="Mean steps (model replies) per task.")
    stop_reasons: dict[str, int] = Field(description="How many tasks ended each way.")
    superseded: int = Field(
        description="Older trajectories of the same tasks left out (the agent changed and "
        "the tasks ran again)."
    )


def condition_id(row: dict[str, object]) -> str:
    """The id of the condition whose key fields ``row`` holds (model last: it may hold ':')."""
    return ":".join(
        str(row[c])[:12] if c == "skill_commit" else str(row[c]) for c in CONDITION_COLUMNS
    )


def condition_rates(
    con: duckdb.DuckDBPyConnection,
    *,
    origin: str | None = None,
    suite: str | None = None,
    split: str | None = None,
    seed: int | None = None,
) -> list[ConditionRate]:
    """The figures of every condition (optionally of one origin, suite and split), in key
    order. Nothing is pooled across runs: two runs of the same tasks are two rows.
    ``seed``: the bootstrap seed; None: the condition's run seed (:func:`bootstrap_seed`).

    Seconds and tokens are measured as an evaluation's summary measures them
    (:func:`toolkit.evaluate.summarise`), so a finished evaluation's row matches its eval file;
    an unfinished one (trajectories, no eval file yet) has a row too.
    """
    keys = ", ".join(f"l.{c}" for c in CONDITION_COLUMNS)
    rows = con.execute(
        f"""WITH ranked AS ({_ranked(_SELECTION)}),
           latest AS (SELECT * FROM ranked WHERE recency = 1),
           replayed AS (
               SELECT s.run_id, s.origin, s.trajectory_id, bool_or(s.cache_hit) AS replayed
               FROM steps s SEMI JOIN latest l
                 ON s.run_id = l.run_id AND s.origin = l.origin AND s.trajectory_id = l.id
               GROUP BY ALL),
           superseded AS (
               SELECT {", ".join(CONDITION_COLUMNS)}, count(*) AS n
               FROM ranked WHERE recency > 1 GROUP BY ALL),
           figures AS (
               SELECT {keys}, any_value(l.skill_name) AS skill_name,
                      list(l.passed ORDER BY l.task_id, l.seed) AS outcomes,
                      avg(l.latency_s) FILTER (WHERE NOT coalesce(r.replayed, false)) AS s_mean,
                      median(l.latency_s) FILTER (WHERE NOT coalesce(r.replayed, false))
                          AS s_median,
                      count(*) FILTER (WHERE coalesce(r.replayed, false)) AS replayed,
                      avg(l.tokens_in + l.tokens_out) AS tokens,
                      count(*) FILTER (WHERE l.tokens_in IS NULL OR l.tokens_out IS NULL)
                          AS tokens_unreported,
                      avg(l.n_steps) AS replies,
                      histogram(coalesce(l.stop_reason, 'unknown')) AS stops,
                      list(DISTINCT l.seed) AS seeds
               FROM latest l LEFT JOIN replayed r
                 ON r.run_id = l.run_id AND r.origin = l.origin AND r.trajectory_id = l.id
               GROUP BY {keys})
           SELECT f.*, coalesce(x.n, 0) AS superseded
           FROM figures f LEFT JOIN superseded x USING ({", ".join(CONDITION_COLUMNS)})
           ORDER BY {", ".join(f"f.{c}" for c in CONDITION_COLUMNS)}""",
        {"origin": origin, "suite": suite, "split": split},
    ).fetchall()
    out = []
    for row in rows:
        key = dict(zip(CONDITION_COLUMNS, row[: len(CONDITION_COLUMNS)], strict=True))
        name, outcomes, s_mean, s_median, replayed, tokens, unreported, replies, stops, seeds = row[
            len(CONDITION_COLUMNS) : -1
        ]
        superseded = row[-1]
        rate = pass_rate(outcomes, seed=bootstrap_seed(seeds) if seed is None else seed)
        out.append(
            ConditionRate(
                id=condition_id(key),
                **key,
                skill_name=name,
                n=rate.n,
                passed=rate.passed,
                rate=rate.rate,
                ci_low=rate.ci.low,
                ci_high=rate.ci.high,
                seconds_per_task=s_mean,
                seconds_median=s_median,
                replayed=replayed,
                tokens_per_task=tokens,
                tokens_unreported=unreported,
                replies_per_task=replies or 0.0,
                stop_reasons=dict(sorted(stops.items(), key=lambda kv: (-kv[1], kv[0]))),
                superseded=superseded,
            )
        )
    return out


def condition_records(con: duckdb.DuckDBPyConnection, condition: ConditionRate) -> list[EvalRecord]:
    """One condition's tasks as eval records (the latest trajectory of each task and seed, in
    task order), ready for :func:`toolkit.evaluate.pair_results`."""
    # Every key column is in the ranking's partition, so filtering first ranks the same.
    where = " AND ".join(f"{c} = ${c}" for c in CONDITION_COLUMNS)
    rows = con.execute(
        f"""WITH latest AS (SELECT * FROM ({_ranked(where)}) WHERE recency = 1),
           cached AS (
               SELECT s.trajectory_id, count(*) FILTER (WHERE s.cache_hit) AS n
               FROM steps s SEMI JOIN latest l
                 ON s.run_id = l.run_id AND s.origin = l.origin AND s.trajectory_id = l.id
               GROUP BY ALL)
           SELECT t.suite, t.split, t.skill_commit, t.model, t.seed, t.delivery, t.protocol,
                  t.task_id, t.passed, t.score, t.id, t.tokens_in + t.tokens_out, t.latency_s,
                  CASE WHEN t.stop_reason = 'error' THEN t.error END, coalesce(c.n, 0),
                  t.n_steps
           FROM latest t LEFT JOIN cached c ON c.trajectory_id = t.id
           ORDER BY t.task_id, t.seed""",
        condition.model_dump(include=set(CONDITION_COLUMNS)),
    ).fetchall()
    fields = ["suite", "split", "skill_commit", "model", "seed", "delivery", "protocol",
              "task_id", "passed", "score", "trajectory_id", "tokens", "seconds", "error",
              "cached_steps", "steps"]  # fmt: skip
    return [EvalRecord.model_validate(dict(zip(fields, r, strict=True))) for r in rows]


def flipped_tasks(
    con: duckdb.DuckDBPyConnection, commit_a: str, commit_b: str
) -> list[FlippedTask]:
    """Tasks (per suite, model, protocol and seed: one agent on both sides) that always
    passed under one version and always failed under the other. A commit may be given by a
    unique prefix."""
    rows = con.execute(
        """WITH per_task AS (
               SELECT suite, task_id, model, protocol, seed,
                      avg(passed::INT) FILTER (WHERE starts_with(skill_commit, $a)) AS rate_a,
                      avg(passed::INT) FILTER (WHERE starts_with(skill_commit, $b)) AS rate_b
               FROM trajectories GROUP BY ALL)
           SELECT suite, task_id, model, protocol, seed, rate_a, rate_b FROM per_task
           WHERE (rate_a = 1 AND rate_b = 0) OR (rate_a = 0 AND rate_b = 1)
           ORDER BY suite, task_id, model, protocol, seed""",
        {"a": commit_a, "b": commit_b},
    ).fetchall()
    return [
        FlippedTask(
            suite=s,
            task_id=t,
            model=m,
            protocol=p,
            seed=seed,
            rate_a=a,
            rate_b=b,
            direction="fixed" if b > a else "broken",
        )
        for s, t, m, p, seed, a, b in rows
    ]


def section_usage(con: duckdb.DuckDBPyConnection, origin: str | None = None) -> list[SectionUsage]:
    """Uses of each skill section or file per skill version, with the users' pass rate.

    ``origin``: ``eval`` or ``rollout`` to count only those trajectories; None: both.
    """
    rows = con.execute(
        """WITH per_traj AS (
               SELECT run_id, origin, trajectory_id, skill_commit, ref, kind, count(*) AS uses
               FROM section_uses WHERE ? IS NULL OR origin = ? GROUP BY ALL)
           SELECT u.skill_commit, u.ref, u.kind, sum(u.uses)::BIGINT, count(*),
                  avg(t.passed::INT)
           FROM per_traj u JOIN trajectories t
             ON t.run_id = u.run_id AND t.origin = u.origin AND t.id = u.trajectory_id
           GROUP BY ALL ORDER BY u.skill_commit, sum(u.uses) DESC, u.ref, u.kind""",
        [origin, origin],
    ).fetchall()
    return [
        SectionUsage(skill_commit=c, ref=r, kind=k, uses=u, trajectories=n, pass_rate=p)
        for c, r, k, u, n, p in rows
    ]


#: Prompt and completion sums over the rows that reported both counts (as
#: :class:`toolkit.tokens.TokenTally` takes them), then how many rows did not.
_TOKEN_SUMS = """
    coalesce(sum(tokens_in) FILTER (WHERE tokens_out IS NOT NULL), 0)::BIGINT,
    coalesce(sum(tokens_out) FILTER (WHERE tokens_in IS NOT NULL), 0)::BIGINT,
    count(*) FILTER (WHERE tokens_in IS NULL OR tokens_out IS NULL)"""

#: The cost over the rows that were priced (as :class:`toolkit.cost.CostTally` takes it), then
#: how many rows were not.
_COST_SUMS = """
    coalesce(sum(cost_usd), 0.0), count(*) FILTER (WHERE cost_usd IS NULL)"""


def cost_by_model(con: duckdb.DuckDBPyConnection) -> list[ModelCost]:
    """Calls, tokens, cost and latency (mean, median, 95th percentile) per model."""
    rows = con.execute(
        f"""SELECT model, count(*), count(*) FILTER (WHERE cache_hit),
                  count(*) FILTER (WHERE error IS NOT NULL), {_TOKEN_SUMS}, {_COST_SUMS},
                  avg(latency_s), quantile_cont(latency_s, 0.5), quantile_cont(latency_s, 0.95)
           FROM llm_calls GROUP BY model ORDER BY model"""
    ).fetchall()
    fields = list(ModelCost.model_fields)
    return [ModelCost.model_validate(dict(zip(fields, row, strict=True))) for row in rows]


class SectionEffect(BaseModel):
    """Pass rate of trajectories that used a section vs those (same skill version, run,
    origin, split, model, protocol and delivery) that did not."""

    run_id: str
    origin: str = Field(description="rollout | eval.")
    split: str
    skill_commit: str
    model: str
    protocol: str
    delivery: str
    ref: str
    n_with: int
    rate_with: float | None
    n_without: int
    rate_without: float | None
    difference: float | None = Field(description="rate_with - rate_without (not causal).")


class AblationEffect(BaseModel):
    """One ablation of ``ablations``: the effect of removing (or only adding) one edit."""

    run_id: str
    edit_id: str
    patch_id: str | None
    kind: str = Field(description="'ablate' (S* without the edit) or 'only' (S0 with it).")
    n: int
    pass_rate: float | None
    effect: float | None = Field(
        description="The edit's contribution, as report and ablate show it (> 0 helps): "
        "-delta for ablate, delta for only."
    )
    effect_ci_low: float | None = Field(description="Paired bootstrap 95% CI of effect, low.")
    effect_ci_high: float | None = Field(description="Paired bootstrap 95% CI of effect, high.")
    p_value: float | None = Field(description="Exact McNemar p-value.")
    delta: float | None = Field(
        description="The evaluated version's pass rate minus its reference's, paired: "
        "(S* without the edit) - S* for ablate, (S0 with it) - S0 for only."
    )
    ci_low: float | None = Field(description="Paired bootstrap 95% CI of delta, low end.")
    ci_high: float | None = Field(description="Paired bootstrap 95% CI of delta, high end.")
    support: int | None = Field(description="Leaf patches behind the edit, when known.")
    file: str | None
    op: str | None
    content: str | None = Field(description="The edit's text (first 200 characters).")


class LineSupport(BaseModel):
    """One line of a run's S* with where it came from."""

    run_id: str
    file: str
    line: int
    text: str
    kind: str | None = Field(description="patch | merge | result ...; None: predates the run.")
    support: int | None
    patch_id: str | None
    merge_commit: str | None
    trajectories: int = Field(description="Trajectories behind the line.")


class StageCost(BaseModel):
    """Work, tokens, cost and latency of one stage and model."""

    stage: str = Field(description="rollout | evaluate | analyse | consolidate.")
    model: str
    units: int = Field(description="Trajectories, analyses or merges.")
    tokens_in: int = Field(description="Prompt tokens of the units that reported them.")
    tokens_out: int = Field(description="Completion tokens of the units that reported them.")
    tokens_unreported: int = Field(
        description="Units whose token counts were not reported, left out of the two sums."
    )
    cost_usd: float | None = Field(
        description="Cost in USD of the units that were priced; None where the stage's files "
        "record no cost (analyses and merges: their calls are in cost_by_model)."
    )
    cost_unpriced: int = Field(
        description="Units whose cost is unknown (no price for the model, no usage reported), "
        "left out of cost_usd."
    )
    seconds_mean: float | None
    seconds_p95: float | None


class TrajectoryRow(BaseModel):
    """One trajectory as :func:`find_trajectories` lists it."""

    run_id: str
    origin: str
    id: str
    task_id: str
    split: str
    skill_commit: str
    model: str
    passed: bool
    n_steps: int
    tokens_in: int | None = Field(description="None: the provider did not report them.")
    tokens_out: int | None = Field(description="None: the provider did not report them.")
    latency_s: float
    stop_reason: str


def usage_vs_pass_rate(con: duckdb.DuckDBPyConnection) -> list[SectionEffect]:
    """Per skill version and section: pass rate of its users vs its non-users.

    Users and non-users come from one set of trajectories, as in :func:`pass_rate_by_skill`:
    one run, origin, split, model, protocol and delivery. Pooled, S0's rollouts on the evolve
    split (other tasks, another base rate) moved both rates away from what `trace2skill
    usage` shows for the test split.
    """
    rows = con.execute(
        """WITH users AS (
               SELECT DISTINCT run_id, origin, trajectory_id, ref FROM section_uses),
           totals AS (
               SELECT run_id, origin, split, skill_commit, model, protocol, delivery,
                      count(*) AS n, sum(passed::INT) AS p
               FROM trajectories GROUP BY ALL),
           used AS (
               SELECT t.run_id, t.origin, t.split, t.skill_commit, t.model, t.protocol,
                      t.delivery, u.ref, count(*) AS n, sum(t.passed::INT) AS p
               FROM users u JOIN trajectories t
                 ON t.run_id = u.run_id AND t.origin = u.origin AND t.id = u.trajectory_id
               GROUP BY ALL)
           SELECT u.run_id, u.origin, u.split, u.skill_commit, u.model, u.protocol,
                  u.delivery, u.ref, u.n, u.p / u.n, tt.n - u.n,
                  CASE WHEN tt.n > u.n THEN (tt.p - u.p) / (tt.n - u.n) END
           FROM used u
           JOIN totals tt
             USING (run_id, origin, split, skill_commit, model, protocol, delivery)
           ORDER BY u.skill_commit, u.ref, u.run_id, u.origin, u.split, u.model,
                    u.protocol, u.delivery"""
    ).fetchall()
    return [
        SectionEffect(
            run_id=run,
            origin=origin,
            split=split,
            skill_commit=c,
            model=model,
            protocol=protocol,
            delivery=delivery,
            ref=r,
            n_with=nw,
            rate_with=rw,
            n_without=no,
            rate_without=ro,
            difference=None if rw is None or ro is None else rw - ro,
        )
        for run, origin, split, c, model, protocol, delivery, r, nw, rw, no, ro in rows
    ]


def ablation_effects(
    con: duckdb.DuckDBPyConnection, run_id: str | None = None
) -> list[AblationEffect]:
    """Every ablation with its edit's support and text, largest effect (either sign) first."""
    where, params = ("WHERE a.run_id = ?", [run_id]) if run_id else ("", [])
    # A producer that wrote no effect (it is optional in the contract) gets the one the
    # toolkit writes: an ablation's delta is (S* without the edit) - S*, so it is negated.
    rows = con.execute(
        f"""WITH a AS (
               SELECT *,
                      coalesce(effect, CASE WHEN kind = 'ablate' THEN -delta ELSE delta END)
                          AS edit_effect,
                      coalesce(effect_ci_low,
                               CASE WHEN kind = 'ablate' THEN -ci_high ELSE ci_low END)
                          AS edit_low,
                      coalesce(effect_ci_high,
                               CASE WHEN kind = 'ablate' THEN -ci_low ELSE ci_high END)
                          AS edit_high
               FROM ablations)
            SELECT a.run_id, a.edit_id, a.patch_id, a.kind, a.n, a.pass_rate,
                   a.edit_effect + 0.0, a.edit_low + 0.0, a.edit_high + 0.0, a.p_value,
                   a.delta, a.ci_low, a.ci_high, e.support, e.file, e.op, left(e.content, 200)
            FROM a LEFT JOIN edits e
              ON e.run_id = a.run_id AND e.patch_id = a.patch_id AND e.edit_id = a.edit_id
            {where}
            ORDER BY abs(a.edit_effect) DESC NULLS LAST, a.run_id, a.edit_id, a.kind""",
        params,
    ).fetchall()
    fields = list(AblationEffect.model_fields)
    return [AblationEffect.model_validate(dict(zip(fields, r, strict=True))) for r in rows]


def line_support(
    con: duckdb.DuckDBPyConnection, run_id: str | None = None, *, file: str | None = None
) -> list[LineSupport]:
    """Every line of S* (of one run, one file) with its kind, support and origin."""
    clauses, params = [], []
    if run_id:
        clauses.append("run_id = ?")
        params.append(run_id)
    if file:
        clauses.append("file = ?")
        params.append(file)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = con.execute(
        f"""SELECT run_id, file, line, text, kind, support, patch_id, merge_commit,
                   coalesce(len(trajectories), 0)
            FROM skill_lines {where} ORDER BY run_id, file, line""",
        params,
    ).fetchall()
    fields = list(LineSupport.model_fields)
    return [LineSupport.model_validate(dict(zip(fields, r, strict=True))) for r in rows]


def cost_by_stage(con: duckdb.DuckDBPyConnection) -> list[StageCost]:
    """Tokens, cost and latency per stage and model, from the stages' own records."""
    rows = con.execute(
        f"""WITH work AS (
               SELECT CASE origin WHEN 'eval' THEN 'evaluate' ELSE 'rollout' END AS stage,
                      model, tokens_in, tokens_out, cost_usd, true AS costed,
                      latency_s AS seconds
               FROM trajectories
               UNION ALL
               SELECT 'analyse', model, tokens_in, tokens_out, NULL, false,
                      ended_at - started_at
               FROM analyses
               UNION ALL
               SELECT 'consolidate', coalesce(model, 'none'), tokens_in, tokens_out, NULL, false,
                      ended_at - started_at
               FROM merges)
           -- A trajectory's NULL cost is unknown; analyses and merges record none at all.
           SELECT stage, model, count(*), {_TOKEN_SUMS},
                  CASE WHEN bool_or(costed) THEN coalesce(sum(cost_usd), 0.0) END,
                  count(*) FILTER (WHERE costed AND cost_usd IS NULL),
                  avg(seconds), quantile_cont(seconds, 0.95)
           FROM work GROUP BY stage, model
           ORDER BY list_position(['rollout', 'analyse', 'consolidate', 'evaluate'], stage),
                    model"""
    ).fetchall()
    fields = list(StageCost.model_fields)
    return [StageCost.model_validate(dict(zip(fields, r, strict=True))) for r in rows]


def find_trajectories(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str | None = None,
    origin: str | None = None,
    skill_commit: str | None = None,
    task_id: str | None = None,
    model: str | None = None,
    split: str | None = None,
    passed: bool | None = None,
    uses: str | None = None,
    limit: int = 100,
) -> list[TrajectoryRow]:
    """Trajectories matching every filter given (``skill_commit`` may be a prefix; ``uses``
    is a section ref such as ``SKILL.md#synth/rule-01`` the trajectory read, cited or echoed)."""
    clauses, params = [], []
    for column, value in (
        ("run_id", run_id),
        ("origin", origin),
        ("task_id", task_id),
        ("model", model),
        ("split", split),
        ("passed", passed),
    ):
        if value is not None:
            clauses.append(f"t.{column} = ?")
            params.append(value)
    if skill_commit is not None:
        clauses.append("starts_with(t.skill_commit, ?)")
        params.append(skill_commit)
    if uses is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM section_uses u WHERE u.run_id = t.run_id "
            "AND u.origin = t.origin AND u.trajectory_id = t.id AND u.ref = ?)"
        )
        params.append(uses)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = con.execute(
        f"""SELECT t.run_id, t.origin, t.id, t.task_id, t.split, t.skill_commit, t.model,
                   t.passed, t.n_steps, t.tokens_in, t.tokens_out, t.latency_s, t.stop_reason
            FROM trajectories t {where}
            ORDER BY t.run_id, t.origin, t.id LIMIT ?""",
        [*params, limit],
    ).fetchall()
    fields = list(TrajectoryRow.model_fields)
    return [TrajectoryRow.model_validate(dict(zip(fields, r, strict=True))) for r in rows]
