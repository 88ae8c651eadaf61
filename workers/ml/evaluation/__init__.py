"""Evaluation: metrics (with their evaluate modules), the candidate runner, its data."""
