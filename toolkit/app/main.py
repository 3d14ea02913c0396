"""The app's entry script: page set-up and navigation over the page scripts in ``views/``.

``trace2skill app`` runs this file with ``streamlit run``; the repository's ``app.py`` calls
:func:`main` too, so both serve the same pages.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).resolve().parent / "views"

#: (script, title, url path, icon), in menu order; the first page opens by default.
PAGES: list[tuple[str, str, str, str]] = [
    ("runs.py", "Runs", "runs", ":material/table_chart:"),
    ("conditions.py", "Conditions", "conditions", ":material/compare_arrows:"),
    ("skill.py", "Skill evolution", "skill", ":material/difference:"),
    ("tree.py", "Consolidation tree", "tree", ":material/account_tree:"),
    ("attribution.py", "Patch attribution", "attribution", ":material/insights:"),
    ("usage.py", "Section usage", "usage", ":material/grid_on:"),
    ("trajectories.py", "Trajectories", "trajectories", ":material/route:"),
    ("cost.py", "Cost", "cost", ":material/payments:"),
]


def main() -> None:
    """Set up the page and run the page the URL asks for."""
    st.set_page_config(page_title="trace2skill", page_icon=":material/school:", layout="wide")
    pages = [
        st.Page(VIEWS / script, title=title, url_path=url, icon=icon, default=i == 0)
        for i, (script, title, url, icon) in enumerate(PAGES)
    ]
    st.navigation(pages).run()


if __name__ == "__main__":
    main()
