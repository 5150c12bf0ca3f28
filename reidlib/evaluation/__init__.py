"""Evaluation: the standard protocol, features of a model, untrained baselines."""
