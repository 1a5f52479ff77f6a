"""Analyses of a policy's behaviour (``arpo analyze``)."""
