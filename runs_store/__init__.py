"""Runs Explorer's store: run records in DuckDB, with no user interface.

The Streamlit pages and the CLI read and change runs only through this package, which never
imports streamlit (a test checks it), so it can be used and tested on its own.
"""

from runs_store.domain.errors import DatabaseBusy, DatabaseUnreadable, InputPathError, StoreError
from runs_store.queries.filters import RunFilter

__all__ = ["DatabaseBusy", "DatabaseUnreadable", "InputPathError", "RunFilter", "StoreError"]
