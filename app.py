"""Runs Explorer: the entry point that `streamlit run app.py` starts.

It names the pages; each page file reads the URL, asks the store, and draws.
"""

import streamlit as st

st.set_page_config(page_title="Runs Explorer", page_icon=":material/manage_search:",
                   layout="wide")

# Each file is named as its url_path: a fresh server answers the first request before app.py has
# declared these pages, by the pages/ file names, so a deep link like /import must match one.
PAGES = [
    st.Page("pages/runs.py", title="Runs", icon=":material/list_alt:", url_path="runs",
            default=True),
    st.Page("pages/insights.py", title="Insights", icon=":material/insights:",
            url_path="insights"),
    st.Page("pages/import.py", title="Import", icon=":material/upload_file:",
            url_path="import"),
    st.Page("pages/run.py", title="Run", icon=":material/account_tree:", url_path="run",
            visibility="hidden"),
]

st.navigation(PAGES).run()
