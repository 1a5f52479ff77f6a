"""The documentation stays true: the config reference is generated from the code, CI runs the
README's test command."""

from pathlib import Path

from arpo.config_doc import documented_commands, reference

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_up_to_date():
    committed = (ROOT / "docs" / "config.md").read_text()
    assert committed == reference(documented_commands()), "run: python -m arpo.config_doc > docs/config.md"


def test_every_command_of_the_reference_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for command in documented_commands():
        assert f"`{command}" in readme


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and ci.strip().splitlines()[-1] == "make test"
