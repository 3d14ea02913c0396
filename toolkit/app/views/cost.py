"""Cost: tokens, model calls, cache hits and latency by stage and by model."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from toolkit.app import data, ui


def render() -> None:
    """Draw the page."""
    st.title("Cost")
    folder = ui.index_or_explain()
    if folder is None:
        return
    with data.open_index(folder) as con:
        chosen = ui.select_runs(con)
    with data.open_index(folder, chosen) as con:
        stages = data.cost_by_stage(con, folder, chosen)
        models = data.cost_by_model(con)
        latencies = data.call_latencies(con)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Model calls", f"{int(models['calls'].sum()):,}")
    c2.metric("Cache hits", f"{int(models['cache_hits'].sum()):,}")
    c3.metric("Tokens", data.total_tokens_text(models))
    c4.metric("Cost", data.total_cost_text(models))
    st.subheader("By stage")
    if stages.empty:
        st.info("No trajectories, analyses or merges in the selected runs.")
    else:
        long = stages.melt(
            id_vars="stage", value_vars=["tokens_in", "tokens_out"], var_name="tokens"
        )
        st.plotly_chart(px.bar(long, x="stage", y="value", color="tokens"), width="stretch")
        st.dataframe(stages, hide_index=True)
        st.caption(
            "rollout and eval count the agent's model calls; analyse and consolidate count "
            "units (analyses, merges), whose calls, cache hits and cost are in the table below. "
            "tokens_unreported: calls (or units) whose provider reported no token counts, "
            "left out of the token sums rather than counted as 0. cost: over the trajectories "
            "whose cost is known; unpriced ones (litellm has no price for the model, or the "
            "provider sent no usage) are named, not counted as $0."
        )
    st.subheader("By model")
    if models.empty:
        st.info("No model calls logged (llm_calls.jsonl) in the selected runs.")
        return
    st.dataframe(data.model_cost_table(models), hide_index=True)
    st.plotly_chart(
        px.histogram(latencies, x="latency_s", color="cache_hit", facet_row="model", nbins=40),
        width="stretch",
    )


render()
