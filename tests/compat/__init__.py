"""Code written for datamaestro 1.16: its public API, behaviour for behaviour, on this design."""
