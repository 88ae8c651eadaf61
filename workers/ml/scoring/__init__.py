"""Scoring shared by prompt trials and evaluation: metrics through the project's evaluate modules."""
