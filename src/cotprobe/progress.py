"""Progress lines for the long loops (generation, judging, training): done/total, rate, ETA.

Lines go to the ``cotprobe`` logger, so they land in the rule's log file. A log file is not a
terminal: a line per update would flood it, so a line is written at most every ``every``
seconds (``COTPROBE_PROGRESS_EVERY``, default 30; 2 on a terminal), and always at the end.
"""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("cotprobe")


def _interval(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def default_every() -> float:
    if "COTPROBE_PROGRESS_EVERY" in os.environ:
        return float(os.environ["COTPROBE_PROGRESS_EVERY"])
    return 2.0 if sys.stderr.isatty() else 30.0


class Progress:
    """``Progress("generate results/x.jsonl", total=200, unit="prompts")``; ``update(n)`` per batch.

    Args:
        what: What is being done (the output file names the cell).
        total: Units to do in this run (a resumed run counts only what is left).
        unit: The unit's name, plural.
        every: Seconds between lines (default: ``default_every()``).
        clock: A monotonic clock (tests pass their own).
    """

    def __init__(self, what: str, total: int, unit: str = "items", every: float | None = None, clock=None):
        self.what, self.total, self.unit = what, int(total), unit
        self.every = default_every() if every is None else float(every)
        self.clock = clock or time.monotonic
        self.start = self.last = self.clock()
        self.done = 0

    def line(self) -> str:
        elapsed = self.clock() - self.start
        share = self.done / self.total if self.total else 1.0
        rate = self.done / elapsed if elapsed > 0 else float("nan")
        text = f"{self.what}: {self.done}/{self.total} {self.unit} ({share:.0%})"
        if self.done and elapsed > 0:
            text += f", {rate:.3g} {self.unit}/s, elapsed {_interval(elapsed)}"
            if self.done < self.total:
                text += f", ETA {_interval((self.total - self.done) / rate)}"
        return text

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        now = self.clock()
        if self.done >= self.total or now - self.last >= self.every:
            self.last = now
            log.info("%s", self.line())
