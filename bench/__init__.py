"""Benchmarks: the adapter beside raw Celery, in the same run, with ratios printed."""
