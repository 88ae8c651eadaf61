"""A compute and memory planner for choosing a model, checked against measurement."""
