"""Reliability suite: real datamaestro processes against a misbehaving server, killed at random points."""
