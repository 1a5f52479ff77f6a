"""Bridges to other training libraries (optional extras): :mod:`arpo.integrations.trl`."""
