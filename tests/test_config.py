import pytest
from pydantic import BaseModel, ConfigDict

from arpo.config import ConfigError, load_config, parse_overrides
from arpo.rollout_job import RolloutJobConfig


def test_overrides_parse_yaml_values_into_nested_dicts():
    assert parse_overrides(["a.b=1", "a.c=true", "d=[x, y]", "e=hello", "f="]) == {
        "a": {"b": 1, "c": True},
        "d": ["x", "y"],
        "e": "hello",
        "f": "",
    }
    for bad in ["novalue", "=3", "a..b=1"]:
        with pytest.raises(ConfigError, match="dotted.key=value"):
            parse_overrides([bad])


def test_file_then_overrides_keep_nested_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 4\nrollout:\n  top_p: 0.9\n")
    cfg = load_config(RolloutJobConfig, path, ["rollout.branching.initial_rollouts=2"])
    assert cfg.seed == 4 and cfg.rollout.top_p == 0.9
    assert cfg.rollout.branching.initial_rollouts == 2
    default = RolloutJobConfig().rollout
    assert cfg.rollout.branching.rollouts_per_prompt == default.branching.rollouts_per_prompt
    assert cfg.rollout.max_response_tokens == default.max_response_tokens


def test_errors_name_the_key_and_the_value(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(RolloutJobConfig, None, ["rollout.branching.alpha=abc", "rollout.tempertaure=1"])
    text = str(err.value)
    assert "rollout.branching.alpha" in text and "'abc'" in text
    assert "rollout.tempertaure" in text and "Extra inputs" in text
    with pytest.raises(ConfigError, match="initial_rollouts"):
        load_config(RolloutJobConfig, None, ["rollout.branching.initial_rollouts=99"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(RolloutJobConfig, bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(RolloutJobConfig, tmp_path / "missing.yaml")


def test_models_with_required_fields_start_from_nothing():
    class Needs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str

    assert load_config(Needs, None, ["name=x"]).name == "x"
    with pytest.raises(ConfigError, match="name: Field required"):
        load_config(Needs)


def test_a_number_addresses_a_list_element_and_one_past_the_end_appends(tmp_path):
    class Item(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str
        limit: int = 0

    class Holder(BaseModel):
        model_config = ConfigDict(extra="forbid")
        items: list[Item] = []
        tags: list[str] = []

    path = tmp_path / "c.yaml"
    path.write_text("items: [{name: a, limit: 3}]\ntags: [x, y]\n")
    cfg = load_config(Holder, path, ["items.0.limit=5", "items.1={name: b}", "tags.1=z"])
    assert cfg.items == [Item(name="a", limit=5), Item(name="b")] and cfg.tags == ["x", "z"]
    with pytest.raises(ConfigError, match=r"items.3: items has 1 items \(one past the end appends\)"):
        load_config(Holder, path, ["items.3={name: c}"])
    assert load_config(Holder, path, ["items=[]"]).items == []  # a whole list still replaces


def test_an_unquoted_no_for_mixed_precision_means_no():
    """YAML reads `train.mixed_precision=no` as false; the loop settings take it as "no"."""
    from arpo.train.jobs import SFTJobConfig

    config = load_config(SFTJobConfig, None, ["train.mixed_precision=no", "data.toolworld_dir=env"])
    assert config.train.mixed_precision == "no"
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_config(SFTJobConfig, None, ["train.mixed_precision=yes", "data.toolworld_dir=env"])
