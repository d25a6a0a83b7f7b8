"""Lets `python -m benchmarks ...` run the benchmark."""

import sys

from benchmarks.run import main

sys.exit(main())
