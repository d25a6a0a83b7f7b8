"""Lets `python -m runs_store ...` run the command line."""

import sys

from runs_store.cli import main

sys.exit(main())
