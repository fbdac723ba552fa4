"""Progress bars that stay readable in log files, with coarse progress lines on the console.

A workflow job's stdout and stderr go to its log (:func:`ddpmseg.stages.runner.run_script`), and so do its
full tqdm bars. While :func:`console_progress` is active, every bar also prints a few lines to the
console (the job's own stderr, which Snakemake shows), e.g.
``[train_member dataset=cells variant=baseline seed=0 member=3] cells/baseline/seed0/member3: 40/100 epoch (40 %), 2m10s, eta 3m15s``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

# A console line once the bar has advanced another STEP of its total and MIN_INTERVAL_S passed since
# the last line (a quick job prints none), and in any case once a minute while the bar moves.
STEP = 0.1
MIN_INTERVAL_S = 10.0
MAX_INTERVAL_S = 60.0


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


class ConsoleEcho:
    """Decides when one bar's progress is worth a console line, and writes it.

    ``clock`` (seconds, monotonic) is read at creation and at every update; tests pass a fake one.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO,
        *,
        desc: str = "",
        unit: str = "it",
        initial: float = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.stream, self.desc, self.unit = label, stream, desc, unit
        self.clock = clock
        self.started = self.last_line = clock()
        self.initial = initial
        self.last_step = 0  # of STEP, at the last line
        self.last_done: float | None = None

    def update(self, done: float, total: float | None) -> None:
        now = self.clock()
        since_last = now - self.last_line
        stepped = bool(total) and self._step(done, total) > self.last_step
        if since_last >= MAX_INTERVAL_S or (stepped and since_last >= MIN_INTERVAL_S):
            self._write(done, total, now)

    def finish(self, done: float, total: float | None) -> None:
        """The closing line, where the job already printed one (so the console sees it end)."""
        if self.last_done is not None and done != self.last_done:
            self._write(done, total, self.clock())

    @staticmethod
    def _step(done: float, total: float) -> int:
        """How many whole STEPs of the total are done (integer arithmetic: 0.2 + 0.1 is not 0.3)."""
        return int(done * round(1 / STEP) // total)

    def _write(self, done: float, total: float | None, now: float) -> None:
        elapsed = now - self.started
        what = f"{self.desc}: " if self.desc else ""
        line = f"[{self.label}] {what}{done:g}"
        if total:
            line += f"/{total:g} {self.unit} ({100 * done / total:.0f} %), {format_duration(elapsed)}"
            rate = (done - self.initial) / elapsed if elapsed > 0 else 0
            if done < total and rate > 0:
                line += f", eta {format_duration((total - done) / rate)}"
            self.last_step = self._step(done, total)
        else:
            line += f" {self.unit}, {format_duration(elapsed)}"
        print(line, file=self.stream, flush=True)
        self.last_line, self.last_done = now, done


_console: dict[str, Any] | None = None


@contextlib.contextmanager
def console_progress(label: str, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """While active, bars made by :func:`progress_bar` also print coarse lines to ``stream``."""
    global _console
    previous = _console
    _console = {"label": label, "stream": stream, "clock": clock}
    try:
        yield
    finally:
        _console = previous


class EchoingBar(tqdm):
    """A tqdm bar that also feeds a :class:`ConsoleEcho` (tqdm calls ``update`` at most every
    ``mininterval`` while iterating, and on every manual update)."""

    def __init__(self, *args: Any, echo_to: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.echo = ConsoleEcho(
            echo_to["label"], echo_to["stream"], desc=self.desc, unit=self.unit, initial=self.n, clock=echo_to["clock"]
        )

    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        if not self.disable:
            self.echo.update(self.n, self.total)
        return shown

    def close(self) -> None:
        if not self.disable and hasattr(self, "echo"):
            self.echo.finish(self.n, self.total)
            del self.echo  # tqdm may call close twice (explicitly, then on garbage collection)
        super().close()


def progress_bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; redrawn at most every 5 s when stderr is a log file, not a terminal;
    echoed to the console as coarse lines inside :func:`console_progress`."""
    isatty = getattr(sys.stderr, "isatty", lambda: False)
    if not isatty():
        kwargs.setdefault("mininterval", 5.0)
    if _console is not None and not kwargs.get("disable"):
        return EchoingBar(iterable, file=sys.stderr, echo_to=_console, **kwargs)
    return tqdm(iterable, file=sys.stderr, **kwargs)
