"""The index's bulk path: the big run files read by DuckDB alone.

``trajectories.jsonl`` (with its steps and section uses), ``evals/trajectories.jsonl`` and
``llm_calls.jsonl`` hold nearly all of a run's bytes. Parsing them line by line with pydantic
costs several times what DuckDB's own JSON reader takes, so :func:`load` reads such a file
with ``read_json`` and explicit column types into a temp table, and :func:`inserts` gives the
SQL that fills the index tables from it, with the models' defaults for absent fields.

DuckDB alone checks less than the models do, so a file is taken this way only when every line
parses and casts, every required field is present, every enum field holds a known value and
no line has a newer ``schema_version``; otherwise :func:`load` returns None and the caller
reads the file line by line with the models, which skips and reports each bad line. Either
way the rows are the same (``steps.args`` is the action's arguments as compact JSON; a token
count the provider did not report, or a cost that could not be priced, is NULL, as the
models read it: :func:`_count`).
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import duckdb

from toolkit.llm.calls import CALL_RECORD_SCHEMA_VERSION
from toolkit.llm.calls import UNKNOWN_USAGE_SINCE as CALL_UNKNOWN_USAGE_SINCE
from toolkit.trajectory import TRAJECTORY_SCHEMA_VERSION, StopReason
from toolkit.trajectory import UNKNOWN_USAGE_SINCE as TRAJECTORY_UNKNOWN_USAGE_SINCE

#: The temp tables :func:`load` may create (dropped after each run's compaction).
TEMP_TABLES = ("src_rollout", "src_eval", "src_calls")

_STEP = (
    'STRUCT("index" INTEGER, thought VARCHAR, action STRUCT(tool VARCHAR, args JSON), '
    "observation VARCHAR, observation_truncated BOOLEAN, tokens_in BIGINT, tokens_out BIGINT, "
    "latency_s DOUBLE, tool_s DOUBLE, cache_hit BOOLEAN, call_id VARCHAR, error VARCHAR)"
)
_USE = "STRUCT(step INTEGER, kind VARCHAR, file VARCHAR, section_id VARCHAR)"

#: What DuckDB reads of a trajectory line (extra keys are ignored, like the model does).
TRAJECTORY_COLUMNS: dict[str, str] = {
    "schema_version": "INTEGER",
    "id": "VARCHAR",
    "task_id": "VARCHAR",
    "suite": "VARCHAR",
    "split": "VARCHAR",
    "skill_name": "VARCHAR",
    "skill_commit": "VARCHAR",
    "model": "VARCHAR",
    "seed": "BIGINT",
    "delivery": "VARCHAR",
    "protocol": "VARCHAR",
    "final_answer": "VARCHAR",
    "verdict": "STRUCT(passed BOOLEAN, score DOUBLE)",
    "steps": f"{_STEP}[]",
    "section_uses": f"{_USE}[]",
    "tokens_in": "BIGINT",
    "tokens_out": "BIGINT",
    "cost_usd": "DOUBLE",
    "latency_s": "DOUBLE",
    "started_at": "DOUBLE",
    "ended_at": "DOUBLE",
    "stop_reason": "VARCHAR",
    "error": "VARCHAR",
    "source": "VARCHAR",
}
# Required fields and known values, as the pydantic models define them.
_TRAJECTORY_OK = f"""
    coalesce(schema_version, 1) <= {TRAJECTORY_SCHEMA_VERSION}
    AND id IS NOT NULL AND task_id IS NOT NULL AND suite IS NOT NULL
    AND skill_commit IS NOT NULL AND model IS NOT NULL AND delivery IS NOT NULL
    AND verdict.passed IS NOT NULL AND coalesce(verdict.score, 0) BETWEEN 0 AND 1
    AND stop_reason IN ({", ".join(repr(s) for s in get_args(StopReason))})
    AND coalesce(source, 'rollout') IN ('rollout', 'import')
    AND len(list_filter(coalesce(steps, []),
            lambda s: s."index" IS NULL OR s."index" < 0 OR s.action.tool IS NULL)) = 0
    AND len(list_filter(coalesce(section_uses, []),
            lambda u: u.step IS NULL OR u.step < 0 OR u.file IS NULL
                 OR u.kind IS NULL OR u.kind NOT IN ('read', 'cited', 'echoed'))) = 0
"""

CALL_COLUMNS: dict[str, str] = {
    "schema_version": "INTEGER",
    "call_id": "VARCHAR",
    "model": "VARCHAR",
    "tokens_in": "BIGINT",
    "tokens_out": "BIGINT",
    "cost_usd": "DOUBLE",
    "latency_s": "DOUBLE",
    "started_at": "DOUBLE",
    "ended_at": "DOUBLE",
    "cache_hit": "BOOLEAN",
    "retries": "INTEGER",
    "repair_rounds": "INTEGER",
    "model_requests": "INTEGER",
    "structured": "BOOLEAN",
    "error": "VARCHAR",
}
_CALL_OK = f"""
    coalesce(schema_version, 1) <= {CALL_RECORD_SCHEMA_VERSION}
    AND call_id IS NOT NULL AND model IS NOT NULL AND latency_s IS NOT NULL
    AND started_at IS NOT NULL AND ended_at IS NOT NULL
"""


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _count(column: str, version_from: int) -> str:
    """A token count or cost column as the models read it: NULL (unknown) stays NULL from
    ``version_from`` on (absent and null read alike there, as the models' default is None);
    a line of an older format, which had no unknown figure, reads an absent one as 0."""
    return (
        f"CASE WHEN coalesce(schema_version, {version_from}) < {version_from} "
        f"THEN coalesce({column}, 0) ELSE {column} END"
    )


def load(con: duckdb.DuckDBPyConnection, name: str, path: Path, kind: str) -> int | None:
    """Read JSONL ``path`` (``kind``: ``trajectories`` or ``llm_calls``) into temp table
    ``name``; its row count, or None when a line would need the model's judgement."""
    columns, ok = (
        (TRAJECTORY_COLUMNS, _TRAJECTORY_OK) if kind == "trajectories" else (CALL_COLUMNS, _CALL_OK)
    )
    spec = "{" + ", ".join(f"{_literal(c)}: {_literal(t)}" for c, t in columns.items()) + "}"
    try:
        con.execute(
            f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT * FROM read_json('
            f"{_literal(str(path))}, format = 'newline_delimited', columns = {spec})"
        )
        total, good = con.execute(
            f'SELECT count(*), count(*) FILTER (WHERE {ok}) FROM "{name}"'
        ).fetchone() or (0, 0)
    except (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.IOException):
        # Bad data (malformed or torn JSON, a value that does not cast, an unreadable file);
        # a mistake in the SQL above is not caught: it must fail loudly, not fall back.
        con.execute(f'DROP TABLE IF EXISTS "{name}"')
        return None
    if total != good:
        con.execute(f'DROP TABLE "{name}"')
        return None
    return int(total)


def trajectory_inserts(name: str, run_id: str, origin: str) -> dict[str, str]:
    """SQL filling ``t_trajectories``, ``t_steps`` and ``t_section_uses`` from ``name``."""
    keys = f"{_literal(run_id)} AS run_id, {_literal(origin)} AS origin"
    return {
        "trajectories": f"""
            SELECT {keys}, id, task_id, suite, coalesce(split, '') AS split, skill_name,
                   skill_commit, model, coalesce(seed, 0) AS seed, delivery,
                   coalesce(protocol, 'json') AS protocol, verdict.passed AS passed,
                   coalesce(verdict.score, 0.0) AS score,
                   final_answer, coalesce(len(steps), 0) AS n_steps,
                   {_count("tokens_in", TRAJECTORY_UNKNOWN_USAGE_SINCE)} AS tokens_in,
                   {_count("tokens_out", TRAJECTORY_UNKNOWN_USAGE_SINCE)} AS tokens_out,
                   {_count("cost_usd", TRAJECTORY_UNKNOWN_USAGE_SINCE)} AS cost_usd,
                   coalesce(latency_s, 0.0) AS latency_s,
                   coalesce(started_at, 0.0) AS started_at, coalesce(ended_at, 0.0) AS ended_at,
                   stop_reason, error, coalesce(source, 'rollout') AS source
            FROM "{name}" """,
        "steps": f"""
            SELECT {keys}, id AS trajectory_id, s."index" AS step, s.action.tool AS tool,
                   coalesce(s.action.args::VARCHAR, '{{}}') AS args,
                   coalesce(s.thought, '') AS thought,
                   coalesce(s.observation, '') AS observation,
                   coalesce(s.observation_truncated, false) AS observation_truncated,
                   {_count("s.tokens_in", TRAJECTORY_UNKNOWN_USAGE_SINCE)} AS tokens_in,
                   {_count("s.tokens_out", TRAJECTORY_UNKNOWN_USAGE_SINCE)} AS tokens_out,
                   coalesce(s.latency_s, 0.0) AS latency_s, coalesce(s.tool_s, 0.0) AS tool_s,
                   coalesce(s.cache_hit, false) AS cache_hit, s.call_id, s.error
            FROM (SELECT id, schema_version, unnest(steps) AS s FROM "{name}")""",
        "section_uses": f"""
            SELECT {keys}, id AS trajectory_id, skill_commit, u.step, u.kind, u.file,
                   u.section_id,
                   CASE WHEN u.section_id IS NULL THEN u.file
                        ELSE u.file || '#' || u.section_id END AS ref
            FROM (SELECT id, skill_commit, unnest(section_uses) AS u FROM "{name}")""",
    }


def call_insert(name: str, run_id: str) -> str:
    """SQL filling ``t_llm_calls`` from ``name``."""
    return f"""
            SELECT {_literal(run_id)} AS run_id, call_id, model,
                   {_count("tokens_in", CALL_UNKNOWN_USAGE_SINCE)} AS tokens_in,
                   {_count("tokens_out", CALL_UNKNOWN_USAGE_SINCE)} AS tokens_out,
                   {_count("cost_usd", CALL_UNKNOWN_USAGE_SINCE)} AS cost_usd,
                   latency_s, started_at, ended_at,
                   coalesce(cache_hit, false) AS cache_hit, coalesce(retries, 0) AS retries,
                   coalesce(repair_rounds, 0) AS repair_rounds,
                   coalesce(model_requests, 0) AS model_requests,
                   coalesce(structured, false) AS structured, error
            FROM "{name}" """
