"""Coarse console lines of long jobs (the full bars stay in the logs)."""

from __future__ import annotations

import io
import sys

from ddpmseg.base.progress import ConsoleEcho, console_progress, progress_bar


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def echo_lines(steps: list[tuple[float, int]], total: int | None = 100) -> list[str]:
    """Console lines of a bar updated to ``done`` at each (seconds since start, done)."""
    clock, stream = FakeClock(), io.StringIO()
    echo = ConsoleEcho("train_member dataset=cells member=3", stream, desc="member3", unit="epoch", clock=clock)
    start = clock.now
    for seconds, done in steps:
        clock.now = start + seconds
        echo.update(done, total)
    echo.finish(steps[-1][1], total)
    return stream.getvalue().splitlines()


def test_a_quick_job_prints_nothing() -> None:
    assert echo_lines([(0.09 * k, k) for k in range(1, 101)]) == []  # 9 s in all


def test_a_line_every_ten_percent_when_that_is_rarer_than_ten_seconds() -> None:
    lines = echo_lines([(2.0 * k, k) for k in range(1, 101)])  # 200 s in all: 10 % every 20 s
    assert [line.split("(")[1].split(" %")[0] for line in lines] == [str(p) for p in range(10, 101, 10)]
    assert lines[0] == "[train_member dataset=cells member=3] member3: 10/100 epoch (10 %), 20s, eta 3m00s"
    assert lines[-1] == "[train_member dataset=cells member=3] member3: 100/100 epoch (100 %), 3m20s"


def test_at_least_a_line_a_minute_when_ten_percent_takes_longer() -> None:
    lines = echo_lines([(30.0 * k, k) for k in range(1, 11)])  # 1 % every 30 s
    assert len(lines) == 5 and "10/100" in lines[-1]  # at 60, 120, ..., 300 s (the last also at 10 %)
    assert lines[0] == "[train_member dataset=cells member=3] member3: 2/100 epoch (2 %), 1m00s, eta 49m00s"


def test_no_lines_closer_than_ten_seconds_even_for_big_steps() -> None:
    lines = echo_lines([(1.0, 30), (5.0, 60), (12.0, 90), (13.0, 100)])
    assert len(lines) == 2 and "90/100" in lines[0] and "100/100" in lines[1]


def test_unknown_total_gives_a_line_a_minute() -> None:
    lines = echo_lines([(30.0 * k, 1000 * k) for k in range(1, 5)], total=None)
    assert lines == ["[train_member dataset=cells member=3] member3: 2000 epoch, 1m00s", "[train_member dataset=cells member=3] member3: 4000 epoch, 2m00s"]


def test_bars_echo_only_inside_console_progress(monkeypatch) -> None:
    clock, console, log = FakeClock(), io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_bar(total=10, desc="plain")
    clock.now += 100
    bar.update(10)
    bar.close()
    assert console.getvalue() == ""
    with console_progress("extract_features dataset=cells shard=0", console, clock=clock):
        bar = progress_bar(total=10, desc="extract shard0.zarr", unit="batch")
        for _ in range(10):
            clock.now += 15
            bar.update(1)
        bar.close()
    assert console.getvalue().splitlines()[0] == "[extract_features dataset=cells shard=0] extract shard0.zarr: 1/10 batch (10 %), 15s, eta 2m15s"
    assert "extract shard0.zarr" in log.getvalue()  # the full bar still goes to the log
