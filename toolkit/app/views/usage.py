"""Section usage: which skill sections the agent relies on, per skill version."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from toolkit.app import data, ui


def render() -> None:
    """Draw the page."""
    st.title("Section usage")
    folder = ui.index_or_explain()
    if folder is None:
        return
    with data.open_index(folder) as con:
        chosen = ui.select_runs(con)
    if not chosen:
        st.info("Pick one or more runs in the sidebar.")
        return
    with data.open_index(folder, chosen) as con:
        skills, labels = data.selection_versions(con, folder, chosen)
        origin = ui.select_origin(con)
        use = data.usage(con, labels, origin)
        shares = data.section_shares(con, labels, origin)
    if use.empty:
        st.info(
            "No section uses recorded in the selected runs: the agent read, cited or echoed no "
            "skill section (a no-skill or imported run, or delivery `none`)."
        )
        return
    st.caption(
        "Share = fraction of the version's trajectories that read, cited or echoed the section "
        "(any of the three, each trajectory once, as `trace2skill usage` counts it)."
    )
    heat = shares.pivot_table(index="ref", columns="version", values="share").fillna(0)
    fig = px.imshow(
        heat, aspect="auto", color_continuous_scale="Blues", zmin=0, zmax=1, text_auto=".0%"
    )
    fig.update_layout(height=max(300, 26 * len(heat)))
    st.plotly_chart(fig, width="stretch")
    st.subheader("Usage vs pass rate")
    st.plotly_chart(
        px.scatter(
            use,
            x="share",
            y="pass_rate",
            size="uses",
            color="version",
            symbol="kind",
            hover_name="ref",
            range_x=[0, 1.05],
            range_y=[-0.05, 1.05],
        ),
        width="stretch",
    )
    st.subheader("Pruning candidates")
    versions = sorted(
        set(use["skill_commit"]),
        key=lambda c: (not labels.get(c, "").startswith("S*"), labels.get(c, c)),
    )
    commit = ui.select(
        "Skill version", "version", versions, format_func=lambda c: labels.get(c, c[:8])
    )
    try:
        max_share = float(ui.param("maxshare", "0.05"))
    except ValueError:
        max_share = 0.05
    max_share = st.slider(
        "Used by at most", 0.0, 1.0, min(max(max_share, 0.0), 1.0), 0.01, key="w_maxshare"
    )
    ui.set_param("maxshare", f"{max_share:g}")
    sections: list[str] = []
    for s in filter(None, skills.values()):
        for skill, version in ((s.base, s.base_commit), (s.result, s.result_commit)):
            if skill is not None and version == commit:
                sections = data.skill_refs(skill)
    candidates = data.pruning_candidates(shares, commit, sections, max_share)
    st.metric("Sections used by at most that share", len(candidates))
    st.dataframe(
        candidates,
        hide_index=True,
        column_config={"share": st.column_config.NumberColumn(format="percent")},
    )
    if not sections:
        st.caption(
            "Only sections seen in use are listed: this version's files are in no run repository."
        )


render()
