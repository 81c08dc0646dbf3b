"""The one place that prints: progress bars and log lines.

Library code calls ``progress`` and ``log`` and never ``print``, so that tests, the
CLI and notebooks all get the same output. On a terminal progress is a tqdm bar
with its rate; elsewhere (CI, ``dvc exp run --queue``, a log file) a bar would be a
mess of carriage returns, so it prints a plain line every ``every`` seconds instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from tqdm.auto import tqdm

SUMMARY = "summary: "  # the start of a stage's machine-readable closing line


def silent() -> bool:
    """A torchrun process other than rank 0 stays silent: rank 0 speaks for all of them."""
    return os.environ.get("RANK", "0") != "0"


def log(message: str) -> None:
    if not silent():
        print(message, file=sys.stderr, flush=True)


def summary(line: str, **facts) -> None:
    """A stage's closing line for people, then its facts as one JSON line for tools
    (``read_summaries``): the log of ``dvc queue logs`` is all that a queued run leaves."""
    log(line)
    log(SUMMARY + json.dumps(facts, sort_keys=True))


def read_summaries(text: str) -> list[dict]:
    """The facts of every stage's ``summary`` in a log, in order."""
    return [json.loads(line[len(SUMMARY):]) for line in text.splitlines()
            if line.startswith(SUMMARY)]


def progress(iterable=None, *, desc: str, unit: str = "it", total: int | None = None,
             unit_scale: bool = False, every: float = 10.0):
    """A tqdm bar on a terminal; plain periodic lines elsewhere. Use as a context manager."""
    if sys.stderr.isatty() and not silent():
        return tqdm(iterable, desc=desc, unit=unit, total=total, unit_scale=unit_scale,
                    file=sys.stderr, dynamic_ncols=True, leave=False)
    return PlainProgress(iterable, desc=desc, unit=unit, total=total, every=every)


class PlainProgress:
    """tqdm's interface (update, iteration, with-block) printing whole lines."""

    def __init__(self, iterable=None, *, desc, unit, total, every):
        self.iterable, self.desc, self.unit, self.every = iterable, desc, unit, every
        self.total = total if total is not None else _len(iterable)
        self.n = 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def _line(self, now) -> None:
        rate = self.n / max(now - self.start, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        log(f"{self.desc}: {self.n}{of} {self.unit} ({rate:.1f} {self.unit}/s)")

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.n and time.perf_counter() - self.start >= self.every:
            self._line(time.perf_counter())  # a final line only where a run was long enough


def _len(iterable):
    try:
        return len(iterable)
    except TypeError:
        return None


class Timer:
    """Wall time of a stage, for its one-line summary."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def __str__(self):
        return f"{self.seconds:.1f}s"


class Parts:
    """Seconds spent in the named parts of a stage, for its summary line.

    ``with parts("validation"): ...`` adds that block's wall time to its part. ``sync``
    (e.g. ``torch.cuda.synchronize``) runs at both ends, so queued device work is charged
    to the part that queued it rather than to the next one.
    """

    def __init__(self, sync=None):
        self.seconds: dict[str, float] = {}
        self._sync = sync or (lambda: None)

    @contextlib.contextmanager
    def __call__(self, name: str):
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def breakdown(self, main: str, total: float) -> str:
        """'4.2% outside <main> (main 230.1s, validation 3.0s, ..., other 1.1s)': the
        share of ``total`` seconds (the whole stage) not spent in the part ``main``;
        'other' is what no part timed (imports, reading params, opening the data)."""
        other = max(total - sum(self.seconds.values()), 0.0)
        outside = (total - self.seconds.get(main, 0.0)) / total if total > 0 else 0.0
        items = [*self.seconds.items(), ("other", other)]
        return (f"{outside:.1%} outside {main} ("
                + ", ".join(f"{name} {s:.1f}s" for name, s in items) + ")")
