"""Dataset definitions of the benchmark repository."""
