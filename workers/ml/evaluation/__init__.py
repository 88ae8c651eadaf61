"""Evaluation: metrics through `evaluate` (with the metric modules kept here) and the runner
that scores one candidate and checks general ability."""
