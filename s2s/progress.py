"""Progress of a long run on the terminal or in a log: done / total, rate and time left."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


class Progress:
    """A one-line progress bar on stderr (a terminal) or a line every 10 % (a log)."""

    def __init__(self, total: int, label: str, start: int = 0) -> None:
        self.total, self.label, self.done, self.t0 = total, label, start, time.monotonic()
        self.start, self.tty, self.last_tenth = start, sys.stderr.isatty(), -1

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        rate = (self.done - self.start) / max(1e-9, time.monotonic() - self.t0)
        eta = (self.total - self.done) / rate if rate > 0 else 0
        frac = self.done / max(1, self.total)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        line = f"{self.label} [{bar}] {self.done}/{self.total} {note} eta {eta:.0f} s"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if self.done >= self.total else ""))
            sys.stderr.flush()
        elif int(frac * 10) != self.last_tenth:
            self.last_tenth = int(frac * 10)
            log.info(line)
