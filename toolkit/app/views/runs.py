"""Runs: every run with S0 -> S*, pass rate by skill version, and the tasks that flipped."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from toolkit.app import data, ui


def render() -> None:
    """Draw the page."""
    st.title("Runs")
    folder = ui.index_or_explain()
    if folder is None:
        return
    with data.open_index(folder) as con:
        table = data.runs_table(con, folder)
        chosen = ui.select_runs(con)
    st.caption(
        "S0 and S*: pass rate with its bootstrap 95% CI on the run's evaluation "
        "(the rollout's for S0 when it was not evaluated); delta = S* - S0. skipped_lines: "
        "damaged lines of the run's files, left out of these figures. cost: over the model "
        "calls whose cost is known (unpriced: no price for the model, or no usage sent). "
        "kind, author, analysts and merge (strategy, B, L_max): the run's settings, from its "
        "manifest."
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "wall_s": st.column_config.NumberColumn("wall (s)", format="%.1f"),
            "delta": st.column_config.NumberColumn(format="%+.3f"),
        },
    )
    if not chosen:
        st.info("Pick one or more runs in the sidebar to compare their skill versions.")
        return
    with data.open_index(folder, chosen) as con:
        _, labels = data.selection_versions(con, folder, chosen)
        st.subheader("Pass rate by skill version")
        rates = data.pass_rates(con, labels, ui.select_origin(con))
        if rates.empty:
            st.info("The selected runs have no trajectories yet.")
            return
        rates["err_plus"] = rates["ci_high"] - rates["rate"]
        rates["err_minus"] = rates["rate"] - rates["ci_low"]
        # One point per run and split: several of them side by side, not pooled.
        several = rates["where"].nunique() > 1
        rates["x"] = rates["version"] + (("<br>" + rates["where"]) if several else "")
        fig = px.scatter(
            rates,
            x="x",
            y="rate",
            color="model",
            facet_col="suite",
            error_y="err_plus",
            error_y_minus="err_minus",
            hover_data=["where", "n", "passed", "ci_low", "ci_high", "skill_commit"],
            range_y=[0, 1],
            labels={"x": "version"},
        )
        fig.update_traces(marker={"size": 12})
        st.plotly_chart(fig, width="stretch")
        st.dataframe(
            rates[["suite", "version", "where", "model", "n", "passed", "rate", "ci_low",
                   "ci_high"]],
            hide_index=True,
        )  # fmt: skip
        _flips(con, labels)


def _flips(con, labels: dict[str, str]) -> None:
    st.subheader("Tasks that flipped between two versions")
    versions = sorted(labels, key=lambda c: (not labels[c].startswith("S0"), labels[c]))
    if len(versions) < 2:
        st.info("Only one skill version in the selected runs: nothing to compare.")
        return
    names = {c: labels[c] for c in versions}
    left, right = st.columns(2)
    with left:
        a = ui.select("Version A", "a", versions, format_func=names.get)
    star = [c for c in versions if labels[c].startswith("S*")]
    with right:
        b = ui.select(
            "Version B", "b", versions, default=(star or versions[1:])[0], format_func=names.get
        )
    table = data.flips(con, a, b)
    fixed = int((table["direction"] == "fixed").sum())
    broken = int((table["direction"] == "broken").sum())
    c1, c2 = st.columns(2)
    c1.metric("Fixed (failed under A, passed under B)", fixed)
    c2.metric("Broken (passed under A, failed under B)", broken)
    ui.paired_tasks_table(table)


render()
