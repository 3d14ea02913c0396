"""trace2skill's analytics app: ``streamlit run app.py`` (or ``trace2skill app``).

The pages live in the package (``toolkit/app/``) so an installed toolkit serves them too.
Set ``TRACE2SKILL_RUNS_DIR`` to look at a runs folder other than ``runs/``.
"""

from toolkit.app.main import main

main()
