#!/usr/bin/env bash
# `make demo`: the parts of the pipeline that exist today, run for real on bundled data with
# the embedded model. It says plainly which stages are not built yet.
set -euo pipefail
cd "$(dirname "$0")/.."

T=.venv/bin/trace2skill
STAMP=$(date -u +%Y%m%d-%H%M%S)
RUN_ID="demo-$STAMP"
RUN_DIR="runs/$RUN_ID"
LIMIT="${DEMO_LIMIT:-4}"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "1/5 Embedded model: install the default tier (1.1 GB, sha256-verified; a no-op when present)"
$T model install
$T model info

say "2/5 Example skills: validate against the Agent Skills spec and size budgets"
for skill in skills/*/; do
    $T skill validate "$skill"
done
$T skill sections skills/gsm8k-math

say "3/5 Stage 1 + evaluation: the agent with S0 on $LIMIT bundled GSM8K test tasks (real model; a few minutes on 2 cores)"
$T tasks check --suite gsm8k --split test --no-progress
$T eval --skill skills/gsm8k-math --suite gsm8k --split test --limit "$LIMIT" --run-dir "$RUN_DIR"
$T llm calls "$RUN_DIR"

say "4/5 Git store: S0 committed as the run's base (refs/heads/t2s/$RUN_ID/base; your branch is untouched)"
$T repo snapshot skills/gsm8k-math --run "$RUN_ID" --allow-dirty
$T refs list "$RUN_ID"
$T provenance skills/gsm8k-math/SKILL.md:1 --ref "t2s/$RUN_ID/base"
$T bundle export "$RUN_ID" -o "$RUN_DIR/refs.bundle"

say "5/5 Not built yet"
cat <<MSG
The run is in $RUN_DIR (evals/ with the trajectories and results, llm_calls.jsonl, manifest.json,
refs.bundle).
Trajectory analysts, consolidation with the LLM merge operator, attribution, the DuckDB index,
the Streamlit app and pull requests are not built yet, so this demo stops after Stage 1, the
evaluation and the git snapshot; there is no app to open yet.
Look at the trajectories:   .venv/bin/trace2skill trajectories show $RUN_DIR
Remove the demo refs:       .venv/bin/trace2skill refs delete $RUN_ID --yes
MSG
