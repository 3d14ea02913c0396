"""Streamlit pieces the pages share: the runs folder, the index, URL-backed filters, paging.

Every filter a page offers is mirrored in the URL query string (``?run=...&outcome=fail``), so
a view can be shared by copying its address; a widget starts from the URL's value and writes
its own value back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import duckdb
import pandas as pd
import streamlit as st

from toolkit.app import data

RUNS_DIR_ENV = "TRACE2SKILL_RUNS_DIR"
SELECTED_RUNS = "t2s_runs"
"""Session key of the runs last chosen on any page: the next page starts from them (a widget's
own state is dropped when the page that drew it is left)."""
T = TypeVar("T")


def runs_dir() -> Path:
    """The runs folder the app shows: ``$TRACE2SKILL_RUNS_DIR``, else ``runs/``."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


@st.cache_data(ttl=30, show_spinner="Updating the run index...")
def _refresh(runs_dir_str: str) -> list[str]:
    # Incremental: only runs whose files changed are read; at most every 30 s per folder.
    return data.refresh_index(Path(runs_dir_str))


def index_or_explain() -> Path | None:
    """The runs folder with an up-to-date index, or None after explaining what to do."""
    folder = runs_dir()
    if not data.has_runs(folder):
        st.info(
            f"No runs in `{folder.resolve()}` yet. Produce one with `make demo`, or "
            "`trace2skill rollout ...` then `trace2skill evolve ...`, and reload this page. "
            f"To look at another folder: `trace2skill app RUNS_DIR` (or set {RUNS_DIR_ENV})."
        )
        return None
    problems = _refresh(str(folder))
    if problems:
        with st.sidebar.expander(f"Index warnings ({len(problems)})"):
            st.text("\n".join(problems[:50]))
    return folder


def param(key: str, default: str = "") -> str:
    """A filter's value from the URL query string."""
    value = st.query_params.get(key)
    return default if value is None else str(value)


def set_param(key: str, value: str | None) -> None:
    """Write a filter's value to the URL (an empty value removes it)."""
    if value:
        if st.query_params.get(key) != value:
            st.query_params[key] = value
    elif key in st.query_params:
        del st.query_params[key]


def _start(key: str, names: list[str], default: object | None) -> int:
    """The option a URL-backed widget starts on: the URL's, else ``default``, else the first.
    A URL value no longer among the options (another suite's, another selection's) falls back
    to the default: it made side B start on side A's option after A's options changed."""
    for wanted in (param(key), str(default) if default is not None else ""):
        if wanted in names:
            return names.index(wanted)
    return 0


def select(label: str, key: str, options: Sequence[T], default: T | None = None, **kw) -> T:
    """A selectbox backed by the URL parameter ``key``."""
    index = _start(key, [str(o) for o in options], default)
    value = st.selectbox(label, options, index=index, key=f"w_{key}", **kw)
    set_param(key, str(value) if value is not None else None)
    return value


def radio(label: str, key: str, options: Sequence[T], default: T | None = None, **kw) -> T:
    """A horizontal radio backed by the URL parameter ``key``."""
    index = _start(key, [str(o) for o in options], default)
    value = st.radio(label, options, index=index, key=f"w_{key}", horizontal=True, **kw)
    set_param(key, str(value))
    return value


def text(label: str, key: str, **kw) -> str:
    """A text input backed by the URL parameter ``key``."""
    value = st.text_input(label, value=param(key), key=f"w_{key}", **kw)
    set_param(key, value.strip())
    return value.strip()


def _remembered(ids: list[str]) -> list[str]:
    return [r for r in st.session_state.get(SELECTED_RUNS, []) if r in ids]


def select_run(con: duckdb.DuckDBPyConnection) -> str:
    """The one run a page looks at (URL ``run``, in the sidebar): by default the first run
    chosen on another page in this session, else the newest."""
    ids = data.run_ids(con)
    with st.sidebar:
        value = select("Run", "run", ids, default=next(iter(_remembered(ids)), None))
    if value is not None and value not in _remembered(ids):
        st.session_state[SELECTED_RUNS] = [value]
    return value


def select_runs(con: duckdb.DuckDBPyConnection, *, all_by_default: bool = False) -> list[str]:
    """The runs a page compares (URL ``runs``, comma-separated): by default those chosen on
    another page in this session, else the newest; with ``all_by_default``, every run (a page
    that compares across runs, whose first view of one run would show nothing to compare)."""
    ids = data.run_ids(con)
    wanted = [r for r in param("runs").split(",") if r in ids] or (
        ids if all_by_default else _remembered(ids) or ids[:1]
    )
    chosen = st.sidebar.multiselect("Runs", ids, default=wanted, key="w_runs")
    set_param("runs", ",".join(chosen))
    # Every run, this page's default, is no choice of the user's to carry to the next page.
    if chosen and not (all_by_default and chosen == ids):
        st.session_state[SELECTED_RUNS] = chosen
    return chosen


ORIGINS = {
    "eval": "evaluations",
    "rollout": "the rollout",
    "all": "all trajectories",
}


def select_origin(con: duckdb.DuckDBPyConnection) -> str | None:
    """Which trajectories a page counts (URL ``origin``): evaluations by default when the
    selection has any (S0's rollouts on the evolve split are not comparable with S*'s
    evaluations), else the rollout; None for all."""
    evaluated = con.execute("SELECT count(*) FROM trajectories WHERE origin = 'eval'")
    origin = radio(
        "Trajectories",
        "origin",
        list(ORIGINS),
        default="eval" if evaluated.fetchone()[0] else "rollout",
        format_func=ORIGINS.get,
    )
    return None if origin == "all" else origin


def pager(total: int, size: int = data.PAGE_SIZE) -> int:
    """A page picker for a table of ``total`` rows (URL ``page``, 1-based); 0-based page."""
    pages = max(1, -(-total // size))
    try:
        current = min(max(1, int(param("page", "1"))), pages)
    except ValueError:
        current = 1
    page = st.number_input(
        f"Page (of {pages}, {total:,} rows)", 1, pages, current, step=1, key="w_page"
    )
    set_param("page", str(page) if page != 1 else None)
    return int(page) - 1


def trajectory_key(run: str, trajectory_id: str) -> str:
    """One trajectory's key in the explorer's URL (``traj``): its run and id (the same id can
    be in two runs: an eval run and a compare run of the same tasks share them)."""
    return f"{run}/{trajectory_id}"


def split_trajectory_key(key: str) -> tuple[str | None, str]:
    """(run, id) of a ``traj`` key; a bare id (an older link) has no run."""
    run, _, trajectory_id = key.rpartition("/")
    return run or None, trajectory_id


def trajectory_link(trajectory_id: str | None, run: str | None = None) -> str | None:
    """A relative URL opening one trajectory in the explorer, with its run selected."""
    if not trajectory_id:
        return None
    if run is None:
        return f"trajectories?traj={quote(trajectory_id)}"
    key = quote(trajectory_key(run, trajectory_id), safe="")
    return f"trajectories?runs={quote(run, safe='')}&traj={key}"


def paired_tasks_table(table: pd.DataFrame) -> None:
    """Show tasks paired under A and B, their ``trajectory_a``/``run_a`` (and ``_b``) columns
    turned into one link per side that opens the trajectory in its own run."""
    for side in ("a", "b"):
        table[f"trajectory_{side}"] = [
            trajectory_link(t, r)
            for t, r in zip(table[f"trajectory_{side}"], table.pop(f"run_{side}"), strict=True)
        ]
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "trajectory_a": st.column_config.LinkColumn("under A", display_text="open"),
            "trajectory_b": st.column_config.LinkColumn("under B", display_text="open"),
        },
    )


def missing(what: str, command: str) -> None:
    """Say that a stage's output is missing and which command produces it."""
    st.info(f"This run has no {what} yet; run `{command}`.")
