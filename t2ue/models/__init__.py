"""Noise models and their parts: generators, text encoders, surrogates, clusters, and the bundled zoo."""
