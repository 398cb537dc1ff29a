"""Benchmarks and load tests (`make bench`, `trackcast loadtest`)."""
