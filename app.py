"""Runs Explorer: the entry point that `streamlit run app.py` starts.

It names the pages; each page file reads the URL, asks the store, and draws.
"""

import streamlit as st

from pages.common.entry import declared_navigation

st.set_page_config(page_title="Runs Explorer", page_icon=":material/manage_search:", layout="wide")

# Each file is named as its url_path: a fresh server answers a first request before app.py has
# declared these pages, by the pages/ file names; the page then hands over to this script
# (pages/common/entry.py), which draws it by the same URL.
PAGES = [
    st.Page(
        "pages/runs.py", title="Runs", icon=":material/list_alt:", url_path="runs", default=True
    ),
    st.Page("pages/insights.py", title="Insights", icon=":material/insights:", url_path="insights"),
    st.Page("pages/import.py", title="Import", icon=":material/upload_file:", url_path="import"),
    st.Page("pages/sources.py", title="Sources", icon=":material/cloud_sync:", url_path="sources"),
    st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications:", url_path="alerts"),
    st.Page(
        "pages/run.py",
        title="Run",
        icon=":material/account_tree:",
        url_path="run",
        visibility="hidden",
    ),
]

with declared_navigation():
    st.navigation(PAGES).run()
