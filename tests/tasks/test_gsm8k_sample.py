"""The synthetic GSM8K sample: correct arithmetic, seeded, loadable by the gsm8k layout unchanged."""

from __future__ import annotations

import json
import re
from collections import Counter

from typer.testing import CliRunner

from arpo.cli import app
from arpo.tasks import DatasetConfig, load_tasks
from arpo.tasks.gsm8k_sample import TEMPLATES, generate_problems, write_gsm8k_sample
from arpo.tools.calculator import Calculator

ANNOTATION = re.compile(r"<<([^=<>]+)=(\d+)>>(\d+)")
TEMPLATE_WORDS = {
    "eggs": "hens lay",
    "change": "notebooks",
    "pages": "pages on Monday",
    "train": "A train travels",
    "candies": "candies",
    "savings": "every week",
    "garden": "tomato plants",
    "cookies": "batches of",
}
WORD_NUMBERS = {"twice": 2, "three times": 3}


def test_every_step_is_right_and_uses_only_the_question_and_earlier_steps():
    calculator = Calculator()
    for problem in generate_problems(400, seed=1):
        question = problem.row(0)["question"]
        *steps, final = problem.row(0)["answer"].split("\n")
        assert final == f"#### {problem.answer}"
        assert 2 <= len(steps) <= 4
        known = {int(n) for n in re.findall(r"\d+", question)}
        known |= {value for word, value in WORD_NUMBERS.items() if word in question}
        for step in steps:
            ((expression, value, shown),) = ANNOTATION.findall(step)
            assert calculator.evaluate(expression) == int(value) == int(shown), step
            assert {int(n) for n in re.findall(r"\d+", expression)} <= known, (question, step)
            known.add(int(value))
        assert int(value) == problem.answer


def test_the_same_seed_writes_the_same_file(tmp_path):
    a = write_gsm8k_sample(tmp_path / "a.jsonl", n=50, seed=7).read_bytes()
    b = write_gsm8k_sample(tmp_path / "b.jsonl", n=50, seed=7).read_bytes()
    c = write_gsm8k_sample(tmp_path / "c.jsonl", n=50, seed=8).read_bytes()
    assert a == b != c


def test_every_template_is_used():
    questions = [p.question for p in generate_problems(200)]
    assert len(set(questions)) > 190
    kinds = Counter(name for q in questions for name, words in TEMPLATE_WORDS.items() if words in q)
    assert set(kinds) == set(TEMPLATES)


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
