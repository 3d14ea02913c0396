"""Patch attribution: each edit's effect on the pass rate with its 95% CI, and support."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from toolkit.app import data, ui

KINDS = {
    "ablate": "leave-one-out (S* without the edit)",
    "only": "add-one-in (S0 with only the edit)",
}


def render() -> None:
    """Draw the page."""
    st.title("Patch attribution")
    folder = ui.index_or_explain()
    if folder is None:
        return
    with data.open_index(folder) as con:
        run = ui.select_run(con)
        run_stages = data.stages(con, run)
    effects = data.attribution(folder / run)
    if effects.empty:
        st.info(data.next_step(folder, run, run_stages, "attribution"))
        return
    kinds = [k for k in KINDS if k in set(effects["kind"])]
    kind = ui.radio("Measured by", "kind", kinds, format_func=KINDS.get)
    shown = effects[effects["kind"] == kind].sort_values("effect").reset_index(drop=True)
    # Coloured as counted: by the CI, not the point estimate (red bars stood beside "Hurt 0").
    shown["sign"] = [
        "helps (CI above 0)" if low > 0 else "hurts (CI below 0)" if high < 0 else "CI holds 0"
        for low, high in zip(shown["effect_low"], shown["effect_high"], strict=True)
    ]
    c1, c2, c3 = st.columns(3)
    c1.metric("Edits measured", len(shown))
    c2.metric("Help (CI above 0)", int((shown["effect_low"] > 0).sum()))
    c3.metric("Hurt (CI below 0)", int((shown["effect_high"] < 0).sum()))
    st.caption(
        "Effect = change in pass rate the edit brings (positive: it helps), paired over the "
        "same tasks and seeds, with its bootstrap 95% CI."
    )
    fig = px.bar(
        shown,
        x="effect",
        y="edit_id",
        orientation="h",
        color="sign",
        color_discrete_map={
            "helps (CI above 0)": "#31a354",
            "hurts (CI below 0)": "#de2d26",
            "CI holds 0": "#969696",
        },
        error_x=shown["effect_high"] - shown["effect"],
        error_x_minus=shown["effect"] - shown["effect_low"],
        hover_data=["patch_id", "n", "pass_rate", "support"],
    )
    fig.update_layout(
        height=max(300, 24 * len(shown)),
        # Edit ids are hex: an all-digit one would turn the axis numeric and hide the rest.
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": list(shown["edit_id"]),
        },
    )
    st.plotly_chart(fig, width="stretch")
    st.dataframe(shown.drop(columns=["sign"]), hide_index=True)
    both = data.loo_vs_aoi(effects)
    left, right = st.columns(2)
    with left:
        st.subheader("Leave-one-out vs add-one-in")
        if both.empty:
            st.info("No edit was measured both ways.")
        else:
            st.plotly_chart(
                px.scatter(both, x="aoi_effect", y="loo_effect", hover_name="edit_id"),
                width="stretch",
            )
    with right:
        st.subheader("Support vs effect")
        known = shown.dropna(subset=["support"])
        if known.empty:
            st.info("No support recorded for these edits (no merges.jsonl or patches/).")
        else:
            st.plotly_chart(
                px.scatter(known, x="support", y="effect", color="sign", hover_name="edit_id"),
                width="stretch",
            )


render()
