"""Ready-made questions over the run index (see :func:`toolkit.index.connect`).

Each function takes a DuckDB connection with the index views and returns pydantic rows, so the
CLI, the app and notebooks share one definition of "pass rate by skill version" and friends.
"""

from __future__ import annotations

import duckdb
from pydantic import BaseModel, Field

from toolkit.stats import pass_rate


class SkillPassRate(BaseModel):
    """Pass rate of one skill version (x model x suite) over the indexed trajectories."""

    suite: str
    skill_commit: str
    model: str
    n: int
    passed: int
    rate: float | None
    ci_low: float = Field(description="Bootstrap 95% percentile interval, low end.")
    ci_high: float = Field(description="Bootstrap 95% percentile interval, high end.")
    wilson_low: float
    wilson_high: float


class FlippedTask(BaseModel):
    """A task that passed under one skill version and failed under the other."""

    suite: str
    task_id: str
    model: str
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
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float


def pass_rate_by_skill(
    con: duckdb.DuckDBPyConnection, *, origin: str | None = None, seed: int = 0
) -> list[SkillPassRate]:
    """Pass rate with 95% CIs per (suite, skill version, model).

    ``origin``: ``rollout`` or ``eval`` to count only those trajectories; None counts both.
    """
    where, params = ("WHERE origin = ?", [origin]) if origin else ("", [])
    rows = con.execute(
        f"""SELECT suite, skill_commit, model, list(passed ORDER BY run_id, id)
            FROM trajectories {where}
            GROUP BY ALL ORDER BY suite, skill_commit, model""",
        params,
    ).fetchall()
    out = []
    for suite, commit, model, outcomes in rows:
        rate = pass_rate(outcomes, seed=seed)
        out.append(
            SkillPassRate(
                suite=suite,
                skill_commit=commit,
                model=model,
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


def flipped_tasks(
    con: duckdb.DuckDBPyConnection, commit_a: str, commit_b: str
) -> list[FlippedTask]:
    """Tasks (per suite and model) that always passed under one version and always failed
    under the other. A commit may be given by a unique prefix."""
    rows = con.execute(
        """WITH per_task AS (
               SELECT suite, task_id, model,
                      avg(passed::INT) FILTER (WHERE starts_with(skill_commit, $a)) AS rate_a,
                      avg(passed::INT) FILTER (WHERE starts_with(skill_commit, $b)) AS rate_b
               FROM trajectories GROUP BY ALL)
           SELECT suite, task_id, model, rate_a, rate_b FROM per_task
           WHERE (rate_a = 1 AND rate_b = 0) OR (rate_a = 0 AND rate_b = 1)
           ORDER BY suite, task_id, model""",
        {"a": commit_a, "b": commit_b},
    ).fetchall()
    return [
        FlippedTask(
            suite=s,
            task_id=t,
            model=m,
            rate_a=a,
            rate_b=b,
            direction="fixed" if b > a else "broken",
        )
        for s, t, m, a, b in rows
    ]


def section_usage(con: duckdb.DuckDBPyConnection) -> list[SectionUsage]:
    """Uses of each skill section or file per skill version, with the users' pass rate."""
    rows = con.execute(
        """WITH per_traj AS (
               SELECT run_id, origin, trajectory_id, skill_commit, ref, kind, count(*) AS uses
               FROM section_uses GROUP BY ALL)
           SELECT u.skill_commit, u.ref, u.kind, sum(u.uses)::BIGINT, count(*),
                  avg(t.passed::INT)
           FROM per_traj u JOIN trajectories t
             ON t.run_id = u.run_id AND t.origin = u.origin AND t.id = u.trajectory_id
           GROUP BY ALL ORDER BY u.skill_commit, sum(u.uses) DESC, u.ref, u.kind"""
    ).fetchall()
    return [
        SectionUsage(skill_commit=c, ref=r, kind=k, uses=u, trajectories=n, pass_rate=p)
        for c, r, k, u, n, p in rows
    ]


def cost_by_model(con: duckdb.DuckDBPyConnection) -> list[ModelCost]:
    """Calls, tokens, cost and latency (mean, median, 95th percentile) per model."""
    rows = con.execute(
        """SELECT model, count(*), count(*) FILTER (WHERE cache_hit),
                  count(*) FILTER (WHERE error IS NOT NULL),
                  sum(tokens_in)::BIGINT, sum(tokens_out)::BIGINT, sum(cost_usd),
                  avg(latency_s), quantile_cont(latency_s, 0.5), quantile_cont(latency_s, 0.95)
           FROM llm_calls GROUP BY model ORDER BY model"""
    ).fetchall()
    fields = list(ModelCost.model_fields)
    return [ModelCost.model_validate(dict(zip(fields, row, strict=True))) for row in rows]
