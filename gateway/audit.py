"""The audit log: one JSON line per thing a key did (job created, finished, deleted; a synchronous
request; a refusal), naming the key id and never the key. It goes to stderr, or to ``--audit-log``."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

AUDIT = logging.getLogger("s2s.gateway.audit")


def configure(path: Path | None) -> None:
    """Send audit lines to ``path`` (appended) or stderr; they do not mix with other logs."""
    for handler in list(AUDIT.handlers):
        AUDIT.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    AUDIT.addHandler(handler)
    AUDIT.setLevel(logging.INFO)
    AUDIT.propagate = False


def audit(event: str, key: str, **fields) -> None:
    """One line: ``{"time": ..., "event": "job.created", "key": "alice", ...}`` (``key`` is the key id)."""
    AUDIT.info(json.dumps({"time": round(time.time(), 3), "event": event, "key": key, **fields}, sort_keys=False))
