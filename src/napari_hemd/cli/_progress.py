"""Progress on stderr: a tqdm bar on a terminal, a plain line every few seconds in a log file."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """``progress(stage, done, total)`` reporter for long CLI runs.

    On a terminal: one tqdm bar per stage (rate and time left). When stderr is not a terminal
    (a log file, a cluster job): a line ``stage: done/total (rate/s, M:SS left)`` at most every
    ``interval`` seconds and when a stage completes, so logs stay readable. A context manager:
    the bar is closed (and the line ended) on errors too.
    """

    def __init__(self, disabled: bool = False, unit: str = "frame", interval: float = 5.0):
        self.disabled = disabled
        self.unit = unit
        self.interval = interval
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.stage = None
        self.t0 = self.last = 0.0
        self.done0 = 0
        self.printed = -1

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.disabled:
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.t0 = self.last = time.perf_counter()
            # a stage first reported with work already done: its rate counts from that report
            self.done0 = done
            self.printed = -1
            if self.tty:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=stage, unit=self.unit, leave=False)
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()
            return
        now = time.perf_counter()
        due = now - self.last >= self.interval or (total and done >= total)
        if due and done and done != self.printed:
            self.last, self.printed = now, done
            of = f"/{total}" if total else ""
            if done <= self.done0:  # nothing timed yet
                print(f"{stage}: {done}{of}", file=sys.stderr, flush=True)
                return
            rate = (done - self.done0) / max(now - self.t0, 1e-9)
            left = (total - done) / rate if total and rate > 0 else 0.0
            eta = f", {int(left // 60)}:{int(left % 60):02d} left" if total > done else ""
            print(f"{stage}: {done}{of} ({rate:.2f}/s{eta})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.stage = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
