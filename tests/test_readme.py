"""The README stays true: its commands exist and every config key is documented."""

from pathlib import Path

from pydantic import BaseModel

from arpo.rollout_job import RolloutJobConfig

ROOT = Path(__file__).resolve().parents[1]


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys += config_keys(sub, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_rollout_config_key_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [k for k in config_keys(RolloutJobConfig) if f"`{k}`" not in readme]
    assert not missing, f"README lacks config keys: {missing}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and ci.strip().splitlines()[-1] == "make test"
