"""Every example config under configs/ validates against its command's config model."""

from pathlib import Path

import pytest

from arpo.config import load_config
from arpo.eval.evaluate import EvalConfig
from arpo.train.jobs import RLJobConfig, SFTJobConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_is_valid(path):
    kinds = {"sft": SFTJobConfig, "eval": EvalConfig}
    load_config(kinds.get(path.stem.rsplit("_", 1)[-1], RLJobConfig), path)


def test_there_are_example_configs():
    names = {p.name for p in CONFIGS}
    assert {"toolworld_sft.yaml", "toolworld_arpo.yaml", "toolworld_grpo.yaml"} <= names
