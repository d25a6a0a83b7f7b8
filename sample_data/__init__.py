"""The sample: its generator, and the bundled file made from it."""
