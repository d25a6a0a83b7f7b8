"""The store's own errors, each with a message a user can act on.

Pages show them with `st.error`; the CLI prints them and exits 2. Nothing else of the store's
internals (DuckDB exceptions, tracebacks) should reach a user.
"""


class StoreError(Exception):
    """Base class: str(error) is the message shown to the user."""


class InputPathError(StoreError):
    """A path given to ingest is missing, unreadable or not a recognised format."""


class DatabaseBusy(StoreError):
    """Another process holds the database file."""


class DatabaseUnreadable(StoreError):
    """The database file exists but is not a DuckDB file this version can open."""


class OutOfMemory(StoreError):
    """DuckDB could not stay within its memory limit."""


class SettingError(StoreError):
    """A setting (environment variable) has a value that is not allowed; the message names it."""
