"""ARPO: Agentic Reinforced Policy Optimization (arXiv 2507.19849) for tool-using LLM agents."""

__version__ = "0.1.0"
