"""Pieces every page shares: reaching the store, the filter toolbar, the URL, status display."""
