"""Ingest: sources (files today, the live engine next) -> the normaliser -> the store, one
transaction per file, with the bounds every input is held to.
"""
