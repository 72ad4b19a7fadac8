"""Dataset definitions of the family repository."""
