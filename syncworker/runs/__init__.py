"""Runs of whole registries over Redis, without Celery: the catalog walk one page at a time,
each repository counted into its run, and the sweep that finds a run that stopped moving."""
