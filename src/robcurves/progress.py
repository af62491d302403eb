"""Progress of long jobs: work done, rate and time left (ETA).

Where the output is a terminal the progress is a tqdm bar; in a job's log (Snakemake
redirects stderr to the rule's log file) it is plain lines, at most one every
``every_s`` seconds and always one at the end, e.g.::

    [exact linf] 3/20 points (15.0%) | 0.21 points/s | elapsed 14s | ETA 1m21s | point 2: optimal ...

Training (per epoch), the nearest-neighbour distances (per tile block) and the exact
stage (per point, with running bracket statistics) report through this class.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``95`` -> ``"1m35s"``, ``3700`` -> ``"1h01m40s"``; ``"?"`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of ``total`` units of work (``unit``: "points", "epochs", "pairs", ...).

    ``log``: a callable that takes each plain line (e.g. a logger's ``info``); without
    one, lines go to ``stream`` (stderr by default), as a tqdm bar if that is a terminal
    and ``bar`` is not False. ``every_s``: the least time between two plain lines (0: a
    line per update). ``enabled=False`` makes every call a no-op.
    """

    def __init__(self, total: int, label: str, unit: str = "points", *, log: Callable[[str], None] | None = None,
                 stream: TextIO | None = None, every_s: float = 10.0, bar: bool | None = None,
                 enabled: bool = True):
        self.total, self.label, self.unit = int(total), label, unit
        self.enabled = bool(enabled)
        self.log = log
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = float(every_s)
        self.done = 0.0
        self.t0 = time.perf_counter()
        self._last = -math.inf
        self._bar = None
        use_bar = (log is None and _is_terminal(self.stream)) if bar is None else (bar and log is None)
        if self.enabled and use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=label, unit=f" {unit}", file=self.stream, dynamic_ncols=True,
                             leave=True)

    # ------------------------------------------------------------------ numbers
    @property
    def elapsed(self) -> float:
        return max(time.perf_counter() - self.t0, 1e-9)

    @property
    def rate(self) -> float:
        """Units per second so far."""
        return self.done / self.elapsed

    @property
    def eta(self) -> float:
        """Seconds left at the rate so far (inf before any work is done)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else math.inf

    def line(self, status: str = "") -> str:
        pct = 100.0 * self.done / max(self.total, 1)
        done = f"{self.done:g}" if self.done != int(self.done) else f"{int(self.done)}"
        text = (f"[{self.label}] {done}/{self.total} {self.unit} ({pct:.1f}%) | {self.rate:.3g} {self.unit}/s | "
                f"elapsed {format_duration(self.elapsed)} | ETA {format_duration(self.eta)}")
        return f"{text} | {status}" if status else text

    # ------------------------------------------------------------------ updates
    def update(self, n: float = 1, status: str = "") -> None:
        """``n`` more units done; ``status`` is shown with the line (or as the bar's postfix)."""
        if not self.enabled:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            if status:
                self._bar.set_postfix_str(status, refresh=False)
            if self.done >= self.total:
                self.close()
            return
        now = time.perf_counter()
        if now - self._last >= self.every_s or self.done >= self.total:
            self._last = now
            self._emit(self.line(status))

    def _emit(self, text: str) -> None:
        if self.log is not None:
            self.log(text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
