"""The domain: what a run and a step are, the eleven statuses, and every rule about a
record (normalising, failed steps, error signatures, masking). Imports nothing else of ours.
"""
