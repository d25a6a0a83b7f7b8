"""Pulling runs from a live engine: its REST API (`api`) or its Postgres database (`postgres`),
each an `EngineSource` that `pull` walks incrementally into the store."""
