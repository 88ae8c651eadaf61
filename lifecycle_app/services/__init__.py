"""Writes. Views, forms, tasks and commands change data only through these functions."""
