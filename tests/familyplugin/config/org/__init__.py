"""Families of variants."""
