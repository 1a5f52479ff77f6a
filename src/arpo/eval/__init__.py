"""Evaluation: sample a model on data sets with tools, score every sample, summarise (``arpo eval``)."""
