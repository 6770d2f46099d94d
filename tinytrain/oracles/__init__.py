"""Independent implementations used by tests and benchmarks as oracles (need torch; never
imported by the toolkit itself)."""
