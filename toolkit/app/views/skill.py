"""Skill evolution: S0 against S* per file, and every line of S* with the merge behind it."""

from __future__ import annotations

import streamlit as st

from toolkit.app import contract, data, ui


def render() -> None:
    """Draw the page."""
    st.title("Skill evolution")
    folder = ui.index_or_explain()
    if folder is None:
        return
    with data.open_index(folder) as con:
        run = ui.select_run(con)
        run_stages = data.stages(con, run)
    skills = data.run_skills(folder, run, run_stages)
    if skills is None or skills.base is None:
        if "evolve" in run_stages:
            st.info(data.next_step(folder, run, run_stages, "consolidation"))
            return
        st.info(
            f"Run `{run}` names no skill repository with a base snapshot (a rollout-only or "
            f"imported run); its skill evolution starts with `trace2skill evolve`."
        )
        return
    if skills.result is None:
        st.info(data.next_step(folder, run, run_stages, "consolidation"))
        return
    diffs = data.file_diff(skills.base, skills.result)
    refs = data.refs_run_id(folder, run)
    st.caption(
        f"Skill `{skills.skill_path}` in `{skills.repo_path}`: S0 = `t2s/{refs}/base`, "
        f"S* = `t2s/{refs}/result`; {len(diffs)} file(s) changed."
    )
    files = sorted(n for n, v in skills.result.files.items() if isinstance(v, str))
    if not files:
        st.info("S* has no text files.")
        return
    changed_first = sorted(files, key=lambda n: (n not in diffs, n))
    file = ui.select("File", "file", changed_first)
    before = skills.base.files.get(file, "")
    after = skills.result.files.get(file, "")
    left, right = st.columns(2)
    left.markdown("**S0**")
    left.code(
        before if isinstance(before, str) else "(binary)", language="markdown", wrap_lines=True
    )
    right.markdown("**S\\***")
    right.code(
        after if isinstance(after, str) else "(binary)", language="markdown", wrap_lines=True
    )
    if file in diffs:
        with st.expander("Unified diff", expanded=False):
            st.code("\n".join(diffs[file]), language="diff")
    _provenance(folder, run, skills, file)


def _provenance(folder, run: str, skills: data.RunSkills, file: str) -> None:
    st.subheader("Where each line of S* came from")
    lines = data.skill_lines(skills, folder / run, file)
    written_only = st.toggle(
        "Only lines this run wrote", value=ui.param("written") == "1", key="w_written"
    )
    ui.set_param("written", "1" if written_only else None)
    shown = lines[lines["kind"] != "user"] if written_only else lines
    c1, c2, c3 = st.columns(3)
    c1.metric("Lines", len(lines))
    c2.metric("Written by patches", int((lines["kind"] == "patch").sum()))
    c3.metric("Written by merges", int((lines["kind"] == "merge").sum()))
    st.dataframe(
        shown.assign(trajectories=[len(t) for t in shown["trajectories"]]),
        hide_index=True,
        column_config={"text": st.column_config.TextColumn(width="large")},
    )
    written = lines[lines["kind"] != "user"]
    if written.empty:
        return
    line = ui.select(
        "Follow a line to its patches and trajectories",
        "line",
        [int(n) for n in written["line"]],
        format_func=lambda n: f"{n}: {lines.loc[n - 1, 'text'][:80]}",
    )
    row = lines.loc[int(line) - 1]
    st.markdown(
        f"Line {row['line']} was written by a **{row['kind']}** commit `{row['commit']}`"
        + (f" (level {int(row['level'])}, group {row['group']})" if row["kind"] == "merge" else "")
        + f", support **{row['support']}**."
    )
    for traj in row["trajectories"]:
        st.markdown(f"- trajectory [{traj}]({ui.trajectory_link(traj, run)})")
    for patch_id in [p for p in row["patches"].split(", ") if p]:
        patch = contract.read_patch(folder / run, patch_id)
        with st.expander(f"patch {patch_id}" + ("" if patch else " (no patches/ file)")):
            if patch is not None:
                st.markdown(patch.reasoning or "_no reasoning_")
                st.json([e.model_dump(exclude_none=True) for e in patch.edits], expanded=False)


render()
