"""Consolidation tree: leaf patches merged level by level into S*, with conflicts and drops."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from toolkit.app import contract, data, ui

#: Colour per node status; failed and passed-up merges stand out.
STATUS_COLOURS = {
    "leaf": "#9ecae1",
    "merged": "#31a354",
    "union": "#74c476",
    "passed_up": "#fd8d3c",
    "failed": "#de2d26",
    "(?)": "#cccccc",
}


def render() -> None:
    """Draw the page."""
    st.title("Consolidation tree")
    folder = ui.index_or_explain()
    if folder is None:
        return
    with data.open_index(folder) as con:
        run = ui.select_run(con)
        run_stages = data.stages(con, run)
    nodes = data.merge_tree(folder / run)
    if nodes.empty:
        st.info(data.next_step(folder, run, run_stages, "consolidation"))
        return
    details = data.merge_details(folder / run)
    leaves = int((nodes["kind"] == "patch").sum())
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Leaf patches", leaves)
    c2.metric("Merges", len(details))
    c3.metric("Conflict hunks", int(details["conflicts"].sum()))
    c4.metric("Failed or passed up", int(details["status"].isin(["failed", "passed_up"]).sum()))
    style = ui.select("Chart", "chart", ["sunburst", "treemap"])
    plot = px.sunburst if style == "sunburst" else px.treemap
    fig = plot(
        nodes,
        ids="id",
        parents="parent",
        names="label",
        color="status",
        color_discrete_map=STATUS_COLOURS,
        hover_data=["kind", "support"],
    )
    fig.update_layout(margin={"t": 10, "l": 10, "r": 10, "b": 10}, height=520)
    st.plotly_chart(fig, width="stretch")
    st.subheader("Merges")
    st.dataframe(details, hide_index=True)
    merge_id = ui.select("Inspect a merge", "merge", list(details["merge"]))
    merge = next(m for m in contract.read_merges(folder / run) if m.node_id == merge_id)
    st.markdown(
        f"**{merge.node_id}**: {merge.status}"
        + (f" ({merge.reason})" if merge.reason else "")
        + f"; children: {', '.join(merge.children)}"
    )
    if merge.conflicts:
        st.markdown(
            "Conflicts: " + ", ".join(f"`{c.file}` ({c.hunks} hunks)" for c in merge.conflicts)
        )
    if merge.edits:
        st.markdown("Edits of the consolidated patch, with the child edits they cite:")
        st.dataframe(
            contract.frame(merge.edits, ["id", "cited", "sources", "support"]), hide_index=True
        )
    if merge.dropped:
        st.markdown("Dropped child edits:")
        st.dataframe(contract.frame(merge.dropped, ["edit_id", "reason"]), hide_index=True)
    patch = contract.read_patch(folder / run, merge.patch_id) if merge.patch_id else None
    if patch is not None:
        with st.expander(f"Consolidated patch {patch.id}: reasoning"):
            st.markdown(patch.reasoning or "_no reasoning_")


render()
