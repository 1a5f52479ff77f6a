"""The synthetic GSM8K sample: correct arithmetic, seeded, loadable by the gsm8k layout unchanged."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from typer.testing import CliRunner

from arpo.cli import app
from arpo.tasks import DatasetConfig, gsm8k_sample, load_tasks
from arpo.tasks.gsm8k_problem import calc
from arpo.tasks.gsm8k_sample import TEMPLATES, Problem, generate_problems, questions_of, write_gsm8k_sample
from arpo.tasks.gsm8k_templates import WORD_NUMBERS
from arpo.tools.calculator import Calculator

ANNOTATION = re.compile(r"<<([^=<>]+)=(\d+)>>(\d+)")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_step_is_right_and_uses_only_the_question_and_earlier_steps(seed):
    calculator = Calculator()
    for problem in generate_problems(1000, seed=seed):
        question = problem.row(0)["question"]
        *steps, final = problem.row(0)["answer"].split("\n")
        assert final == f"#### {problem.answer}"
        assert 2 <= len(steps) <= 4
        known = {int(n) for n in re.findall(r"\d+", question)}
        known |= {value for word, value in WORD_NUMBERS.items() if word in question}
        for step in steps:
            ((expression, value, shown),) = ANNOTATION.findall(step)
            assert calculator.evaluate(expression) == int(value) == int(shown), step
            assert eval(expression) == int(value), step  # Python's precedence reads it as calc did
            assert {int(n) for n in re.findall(r"\d+", expression)} <= known, (question, step)
            known.add(int(value))
        assert int(value) == problem.answer


def test_a_step_that_python_would_read_otherwise_is_refused():
    assert calc(2, "*", 3, "/", 6) == ("2 * 3 / 6 = <<2*3/6=1>>1", 1)
    with pytest.raises(ValueError, match="mixes"):
        calc(2, "+", 3, "*", 4)
    with pytest.raises(ValueError, match="not an integer"):
        calc(7, "/", 2)


def test_the_same_seed_writes_the_same_file(tmp_path):
    a = write_gsm8k_sample(tmp_path / "a.jsonl", n=50, seed=7).read_bytes()
    b = write_gsm8k_sample(tmp_path / "b.jsonl", n=50, seed=7).read_bytes()
    c = write_gsm8k_sample(tmp_path / "c.jsonl", n=50, seed=8).read_bytes()
    assert a == b != c


def test_every_template_is_used():
    questions = [p.question for p in generate_problems(400)]
    assert len(set(questions)) == 400  # distinct: a repeated draw is dropped
    assert set(Counter(p.template for p in generate_problems(400))) == set(TEMPLATES)


def test_the_command_writes_rows_the_gsm8k_layout_loads_unchanged(tmp_path):
    out = tmp_path / "gsm8k" / "train.jsonl"
    result = CliRunner().invoke(app, ["data", "gsm8k-sample", "--out", str(out), "--n", "30", "--seed", "3"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and set(rows[0]) == {"question", "answer", "idx"}
    for layout in ("gsm8k", "auto"):  # auto: the folder is named gsm8k
        tasks = load_tasks(DatasetConfig(path=str(out), layout=layout))
        assert [t.ground_truths for t in tasks] == [(r["answer"].rsplit("#### ", 1)[1],) for r in rows]
        assert {t.answer_type for t in tasks} == {"number"} and {t.source for t in tasks} == {"gsm8k"}
        assert [t.id for t in tasks] == [str(i) for i in range(30)]
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_held_out_sample_excludes_the_training_questions(tmp_path):
    train = write_gsm8k_sample(tmp_path / "train.jsonl", n=400, seed=0)
    out = tmp_path / "test.jsonl"
    result = CliRunner().invoke(
        app, ["data", "gsm8k-sample", "--out", str(out), "--n", "150", "--seed", "1", "--exclude", str(train)]
    )
    assert result.exit_code == 0, result.output
    held_out = [json.loads(line)["question"] for line in out.read_text().splitlines()]
    assert len(set(held_out)) == 150 and not set(held_out) & questions_of(train)
    unfiltered = {p.question for p in generate_problems(150, seed=1)}
    assert unfiltered & questions_of(train), "the check needs a seed whose sample overlaps the training one"


def test_an_exhausted_template_space_is_a_clear_error(monkeypatch):
    one = {"one": lambda rng: Problem("The same question?", ("1 + 0 = <<1+0=1>>1.",), 1)}
    monkeypatch.setattr(gsm8k_sample, "TEMPLATES", one)
    assert len(generate_problems(1)) == 1
    with pytest.raises(ValueError, match="found only 1 distinct problems outside the excluded ones"):
        generate_problems(2)
