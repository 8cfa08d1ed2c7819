"""Prefect flows: each composes tasks from `tasks/` and returns a typed report."""
