"""Progress on a non-terminal stderr: plain lines at the first update, every interval, and at the end."""

from __future__ import annotations

import io

from rich.console import Console

from arpo.progress import ProgressBar


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120), out


def test_a_log_file_gets_plain_lines_first_then_every_interval_and_the_end(monkeypatch) -> None:
    clock = iter([0.0, 0.0, 1.0, 5.0, 12.0, 13.0, 13.0])  # start, enter, then one per update / exit
    monkeypatch.setattr("arpo.progress.time.monotonic", lambda: next(clock))
    log, out = console(terminal=False)
    with ProgressBar("sft", 40, console=log, interval_s=10.0) as bar:
        bar.update(1, "loss 2.1")  # t = 1: the first update prints
        bar.update(2, "loss 1.5")  # t = 5: within the interval, silent
        bar.advance(1)  # t = 12: 11 s after the last line
        bar.update(4, "loss 0.9")  # t = 13: silent
    assert out.getvalue().splitlines() == [
        "sft 1/40 0:00:01 loss 2.1",
        "sft 3/40 0:00:12 loss 1.5",
        "sft 4/40 0:00:13 loss 0.9",  # the end
    ]


def test_the_end_is_not_printed_twice_and_disabled_bars_print_nothing() -> None:
    log, out = console(terminal=False)
    with ProgressBar("eval", 2, console=log) as bar:
        bar.advance(2)
    assert out.getvalue().splitlines() == ["eval 2/2 0:00:00"]
    log, out = console(terminal=False)
    with ProgressBar("eval", 2, console=log, enabled=False) as bar:
        bar.advance(2)
    assert out.getvalue() == ""


def test_a_terminal_gets_the_live_bar_not_lines() -> None:
    tty, out = console(terminal=True)
    with ProgressBar("rl", 3, console=tty) as bar:
        bar.update(3, "reward 0.5")
    text = out.getvalue()
    assert "rl" in text and "3/3" in text and "reward 0.5" in text and "rl 3/3 0:00" not in text
