"""Where runs came from, as the `source` column of `runs` keeps it: the bundled sample is told
apart from a user's own runs by its source, by the loader that writes it and the pages that say
so."""

SAMPLE_SOURCE = "sample_data/sample-runs.jsonl.gz"
