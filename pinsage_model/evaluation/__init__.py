"""Offline evaluation (paper 4.2): ranking metrics, the baselines scored by the same evaluator,
and plots."""
