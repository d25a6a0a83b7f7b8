"""Queries: the filter and its SQL, named parameters, and the view state the URL carries."""
