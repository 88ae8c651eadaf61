"""Uploaded datasets: reading, checking, cleaning, splitting and profiling them."""
