"""Writes on the labeling side. Every service is one transaction; see each docstring for its contract."""
