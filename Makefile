# The two commands of the README. Both set up ./.venv first (scripts/setup.sh).
.PHONY: setup demo test lint

# Optional dependency groups installed with the dev tools (see pyproject.toml); tests of a
# group that is not installed are skipped.
export ARPO_EXTRAS ?= data,lora

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/arpo demo

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check src tests benchmarks
