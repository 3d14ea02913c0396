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

import duckdb
import streamlit as st

from toolkit.app import data

RUNS_DIR_ENV = "TRACE2SKILL_RUNS_DIR"
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


def select(label: str, key: str, options: Sequence[T], default: T | None = None, **kw) -> T:
    """A selectbox backed by the URL parameter ``key``."""
    names = [str(o) for o in options]
    wanted = param(key, str(default) if default is not None else "")
    index = names.index(wanted) if wanted in names else 0
    value = st.selectbox(label, options, index=index, key=f"w_{key}", **kw)
    set_param(key, str(value) if value is not None else None)
    return value


def radio(label: str, key: str, options: Sequence[T], default: T | None = None, **kw) -> T:
    """A horizontal radio backed by the URL parameter ``key``."""
    names = [str(o) for o in options]
    wanted = param(key, str(default) if default is not None else "")
    index = names.index(wanted) if wanted in names else 0
    value = st.radio(label, options, index=index, key=f"w_{key}", horizontal=True, **kw)
    set_param(key, str(value))
    return value


def text(label: str, key: str, **kw) -> str:
    """A text input backed by the URL parameter ``key``."""
    value = st.text_input(label, value=param(key), key=f"w_{key}", **kw)
    set_param(key, value.strip())
    return value.strip()


def select_run(con: duckdb.DuckDBPyConnection) -> str:
    """The one run a page looks at (URL ``run``, in the sidebar), newest by default."""
    ids = data.run_ids(con)
    with st.sidebar:
        return select("Run", "run", ids)


def select_runs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The runs a page compares (URL ``runs``, comma-separated), newest by default."""
    ids = data.run_ids(con)
    wanted = [r for r in param("runs").split(",") if r in ids] or ids[:1]
    chosen = st.sidebar.multiselect("Runs", ids, default=wanted, key="w_runs")
    set_param("runs", ",".join(chosen))
    return chosen


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


def trajectory_link(trajectory_id: str | None) -> str | None:
    """A relative URL opening one trajectory in the explorer."""
    return f"trajectories?traj={trajectory_id}" if trajectory_id else None


def missing(what: str, command: str) -> None:
    """Say that a stage's output is missing and which command produces it."""
    st.info(f"This run has no {what} yet; run `{command}`.")
