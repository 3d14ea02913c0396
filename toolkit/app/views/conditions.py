"""Conditions: the protocols, skill versions, models and deliveries of one suite side by side,
and two of them paired on their shared tasks."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from toolkit.app import data, ui
from toolkit.stats import clear_direction


def render() -> None:
    """Draw the page."""
    st.title("Conditions")
    folder = ui.index_or_explain()
    if folder is None:
        return
    with data.open_index(folder) as con:
        chosen = ui.select_runs(con, all_by_default=True)
    with data.open_index(folder, chosen) as con:
        origin = ui.select_origin(con)
        where = data.suites_and_splits(con, origin)
        if not where:
            st.info("The selected runs have no trajectories of this kind yet.")
            return
        with st.sidebar:
            suite = ui.select("Suite", "suite", sorted({s for s, _ in where}))
            splits = [sp for s, sp in where if s == suite]
            split = ui.select(
                "Split", "split", splits, default="test" if "test" in splits else None
            )
        _, labels = data.selection_versions(con, folder, chosen)
        rows, table = data.conditions(con, labels, suite=suite, split=split, origin=origin)
        st.caption(
            "One row per condition: one run's trajectories of one agent (protocol x skill "
            "version x model x delivery) on the suite's split, one per task (the latest, where "
            "the agent changed and the task ran again: superseded). Pass rate with its "
            "bootstrap 95% CI (Wilson's at 0/n or n/n). s/task: mean and median wall seconds "
            "over the tasks with no reply from the response cache (replayed: a replay costs "
            "no model time); tokens per task over the tasks whose provider reported them "
            "(tokens_unreported: the others), replies per task over every task."
        )
        _chart(table)
        st.dataframe(
            table.drop(columns="id"),
            hide_index=True,
            column_config={
                "rate": st.column_config.NumberColumn(format="%.3f"),
                "ci_low": st.column_config.NumberColumn(format="%.3f"),
                "ci_high": st.column_config.NumberColumn(format="%.3f"),
                "s_per_task": st.column_config.NumberColumn("s/task", format="%.1f"),
                "s_median": st.column_config.NumberColumn("s/task median", format="%.1f"),
                "tokens_per_task": st.column_config.NumberColumn("tokens/task", format="%.0f"),
                "replies_per_task": st.column_config.NumberColumn("replies/task", format="%.2f"),
            },
        )
        _paired(con, rows, dict(zip(table["id"], table["condition"], strict=True)))


def _chart(table) -> None:
    if table.empty:
        return
    shown = table.assign(
        err_plus=table["ci_high"] - table["rate"], err_minus=table["rate"] - table["ci_low"]
    )
    fig = px.scatter(
        shown,
        x="condition",
        y="rate",
        color="protocol",
        error_y="err_plus",
        error_y_minus="err_minus",
        hover_data=["run", "skill", "model", "delivery", "n", "passed", "ci_low", "ci_high"],
        range_y=[0, 1],
    )
    fig.update_traces(marker={"size": 12})
    st.plotly_chart(fig, width="stretch")


def _paired(con, rows, names: dict[str, str]) -> None:
    st.subheader("Paired: B against A on their shared tasks")
    if len(rows) < 2:
        st.info("Only one condition here: nothing to pair. Select more runs in the sidebar.")
        return
    ids = [r.id for r in rows]
    left, right = st.columns(2)
    with left:
        a = ui.select("Condition A", "cond_a", ids, format_func=names.get)
    with right:
        b = ui.select(
            "Condition B", "cond_b", ids, default=next(i for i in ids if i != a),
            format_func=names.get,
        )  # fmt: skip
    by_id = {r.id: r for r in rows}
    comparison, flipped = data.condition_comparison(con, by_id[a], by_id[b])
    p = comparison.paired
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("Shared tasks", p.n)
    c2.metric(
        "B - A",
        "n/a" if p.difference is None else f"{p.difference:+.3f}",
        help="Paired bootstrap 95% CI below; the difference of the pass rates on the shared "
        "tasks only.",
    )
    c3.metric("McNemar p (exact)", f"{p.p_value:.3g}")
    c4.metric("Only A passed", p.only_a)
    c5.metric("Only B passed", p.only_b)
    if p.difference is not None:
        verdict = {
            1: "B is clearly better",
            -1: "A is clearly better",
            0: "no clear difference (that takes a CI clear of 0 and p < 0.05)",
        }
        mde = "none at this n" if p.mde is None else f"{p.mde:.3f}"
        st.caption(
            f"B - A = {p.difference:+.3f}, 95% CI [{p.ci.low:+.3f}, {p.ci.high:+.3f}] over "
            f"{p.n} shared tasks (A {p.rate_a:.3f}, B {p.rate_b:.3f}); both passed "
            f"{p.both_pass}, both failed {p.both_fail}; "
            f"{verdict[clear_direction(p.ci.low, p.ci.high, p.p_value)]}; "
            f"smallest detectable difference {mde}."
        )
    only_a = sum(d.reason == "only-in-a" for d in comparison.dropped)
    only_b = len(comparison.dropped) - only_a
    if comparison.dropped:
        st.caption(f"Left out: {only_a} tasks only A ran, {only_b} only B ran.")
    if flipped.empty:
        return
    ui.paired_tasks_table(flipped)


render()
