"""Chaos storms (issue 20): duplicates and faults at every dependency at once; nothing lost, nothing doubled."""
