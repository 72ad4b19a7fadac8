"""1.x face: ``datamaestro.annotations``, annotations of datasets."""
