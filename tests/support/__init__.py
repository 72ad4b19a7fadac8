"""Helpers shared by the tests and the benchmarks: local servers, sample data, projects."""
