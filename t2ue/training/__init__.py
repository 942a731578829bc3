"""Training a noise model (providers): the loop, its loss, schedule and expectation over transformations."""
