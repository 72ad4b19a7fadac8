"""Annotations of datasets (the original datamaestro's ``datamaestro.annotations``)."""
