"""Runs page (placeholder until the Runs page lands): the run count."""

import streamlit as st

from pages.common.data import page_store, show_sample_note
from runs_store.runs_list import total_runs

st.title("Runs")
with page_store() as store:
    show_sample_note(store)
    st.metric("Runs loaded", f"{store.cached(total_runs):,}")
