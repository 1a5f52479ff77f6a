import json

from typer.testing import CliRunner

from arpo.cli import app
from arpo.core.tree import RolloutTree

runner = CliRunner()


def test_rollout_command_writes_trees_as_json(tmp_path):
    out = tmp_path / "trees.json"
    result = runner.invoke(
        app,
        [
            "rollout",
            "-o",
            str(out),
            "prompts=['what is 2+2?', add 3 and 4]",
            "rollout.branching.rollouts_per_prompt=4",
            "rollout.branching.initial_rollouts=2",
            "rollout.max_response_tokens=32",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["config"]["rollout"]["branching"]["rollouts_per_prompt"] == 4
    assert data["stats"]["trajectories"] == 8
    trees = [RolloutTree.from_dict(t) for t in data["trees"]]
    assert [len(t.leaves()) for t in trees] == [4, 4]
    assert data["trees"][0]["meta"]["prompt"] == "what is 2+2?"
    assert all("text" in node for node in data["trees"][0]["nodes"])
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"


def test_bad_override_exits_2_naming_the_key(tmp_path):
    result = runner.invoke(
        app, ["rollout", "-o", str(tmp_path / "x.json"), "rollout.branching.rule=sometimes"]
    )
    assert result.exit_code == 2
    assert "rollout.branching.rule" in result.output
    assert not (tmp_path / "x.json").exists()
