"""Trajectories: filter by run, task, outcome and section; read one step by step."""

from __future__ import annotations

import streamlit as st

from toolkit.app import contract, data, ui


def render() -> None:
    """Draw the page."""
    st.title("Trajectories")
    folder = ui.index_or_explain()
    if folder is None:
        return
    with data.open_index(folder) as con:
        chosen = ui.select_runs(con)
    with data.open_index(folder, chosen) as con:
        with st.sidebar:
            f = data.TrajectoryFilter(
                task=ui.text("Task id contains", "task"),
                outcome=ui.select("Outcome", "outcome", ["all", "pass", "fail"]),
                origin=ui.select("Origin", "origin", ["all", "rollout", "eval"]),
                section=ui.select(
                    "Section used",
                    "section",
                    ["", *data.section_refs(con)],
                    format_func=lambda r: r or "(any)",
                ),
            )
        total = data.count_trajectories(con, f)
        page = data.trajectories_page(con, f, ui.pager(total))
        st.metric("Matching trajectories", total)
        page["open"] = [
            ui.trajectory_link(t, r) for t, r in zip(page["id"], page["run"], strict=True)
        ]
        st.dataframe(
            page,
            hide_index=True,
            column_config={"open": st.column_config.LinkColumn(display_text="open")},
        )
        wanted = ui.param("traj")
        keys = [ui.trajectory_key(r, t) for r, t in zip(page["run"], page["id"], strict=True)]
        options = list(dict.fromkeys([*([wanted] if wanted else []), *keys]))
        if not options:
            return
        key = ui.select("Trajectory", "traj", options, format_func=_key_text)
        _detail(con, folder, *ui.split_trajectory_key(key))


def _key_text(key: str) -> str:
    run, traj_id = ui.split_trajectory_key(key)
    return f"{traj_id} ({run})" if run else traj_id


def _detail(con, folder, run: str | None, traj_id: str) -> None:
    t = data.trajectory(con, traj_id, run)
    if t is None:
        where = f"run `{run}`" if run else "the selected runs"
        st.warning(f"No trajectory `{traj_id}` in {where}.")
        return
    st.subheader(f"Task {t['task_id']} ({'PASS' if t['passed'] else 'FAIL'})")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Steps", int(t["n_steps"]))
    c2.metric("Tokens", data.tokens_text(t["tokens_in"], t["tokens_out"]))
    c3.metric("Stop", t["stop_reason"])
    unmeasured = t["delivery"] == "imported" and not t["latency_s"]  # an import left it out
    c4.metric("Latency (s)", "unknown" if unmeasured else f"{t['latency_s']:.1f}")
    st.caption(
        f"run `{t['run_id']}` ({t['origin']}), model `{t['model']}`, skill "
        f"`{t['skill_commit'][:8]}` ({t['delivery']}), final answer: {t['final_answer']!r}"
    )
    for s in data.steps(con, t["run_id"], t["origin"], traj_id).itertuples():
        title = f"Step {s.step}: {s.tool}" + (f" (sections: {s.sections})" if s.sections else "")
        with st.expander(title, expanded=s.step == 0):
            if s.thought:
                st.markdown(f"**Thought.** {s.thought}")
            st.code(_args_text(s.args), language="python" if s.tool == "python" else "json")
            st.text(s.observation + (" [truncated]" if s.observation_truncated else ""))
            if s.error:
                st.error(s.error)
    _produced(folder / t["run_id"], traj_id, t["origin"], imported=t["delivery"] == "imported")


def _args_text(args: str) -> str:
    import json

    value = json.loads(args) if args else {}
    if isinstance(value, dict) and set(value) <= {"code"} and "code" in value:
        return value["code"]
    return json.dumps(value, indent=1, ensure_ascii=False)


def _produced(run_dir, traj_id: str, origin: str, *, imported: bool) -> None:
    st.subheader("Analysis and patch")
    analyses = [a for a in contract.read_analyses(run_dir) if a.trajectory_id == traj_id]
    if not analyses and origin == "eval":
        st.info(
            "An evaluation trajectory measures a skill on held-out tasks; only the rollouts "
            "of the evolve split are analysed."
        )
        return
    if not analyses:
        hint = " --skill SKILL_DIR" if imported else ""  # an import records no skill folder
        ui.missing("analysis of this trajectory", f"trace2skill analyse {run_dir}{hint}")
        return
    for a in analyses:
        st.markdown(
            f"**{a.analyst}** analyst (`{a.model}`, {a.turns} turns): **{a.status}**"
            + (f" ({a.reason})" if a.reason else "")
            + (f"; its fix passed: {a.fix_passed}" if a.fix_passed is not None else "")
        )
        if a.report:
            with st.expander("Report"):
                st.markdown(a.report)
        patch = contract.read_patch(run_dir, a.patch_id) if a.patch_id else None
        if patch is not None:
            st.markdown(f"Patch `{patch.id}`: {patch.reasoning}")
            st.json([e.model_dump(exclude_none=True) for e in patch.edits], expanded=False)


render()
