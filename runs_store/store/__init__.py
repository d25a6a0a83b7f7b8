"""The store: the DuckDB file, its schema and change counter, and the rejects table."""
