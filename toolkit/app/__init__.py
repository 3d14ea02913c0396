"""The Streamlit analytics app: runs, skill evolution, consolidation, attribution, usage, cost.

``streamlit run app.py`` (the repository's entry) or ``trace2skill app`` serve
:func:`toolkit.app.main.main`, which registers the page scripts of ``toolkit/app/views/``.
Data comes from :mod:`toolkit.app.data` (index queries and run files), never from page code.
"""
