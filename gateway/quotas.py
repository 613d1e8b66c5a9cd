"""Per-key bounds, checked at the door before any upload is read.

- unfinished jobs: the key's queued and running jobs (from the job store, so they survive a restart)
  plus its requests in flight (uploads being received, synchronous requests);
- rate: new jobs per minute, a token bucket per key (a burst of ``rate`` jobs, refilled evenly);
- disk: the key's stored uploads and results plus what its uploads in flight declared.

The synchronous endpoint counts in the same bounds as jobs, and all synchronous requests together are
also bounded (``max_sync``), since each holds a Triton request and its video in memory.
A refusal is :class:`QuotaError`: HTTP 429 with Retry-After (413 when one upload alone exceeds the
key's disk quota).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from s2s.gateway.auth import Caller
from s2s.gateway.jobs import JobStore


class QuotaError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass
class Ticket:
    """A request admitted: it counts against its key until released (once its job is on disk, or the
    synchronous answer is sent)."""

    admission: Admission
    caller: Caller
    nbytes: int
    sync: bool
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission._release(self)


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class Admission:
    store: JobStore
    max_sync: int
    retry_after_s: int
    inflight: dict[str, int] = field(default_factory=dict)
    inflight_bytes: dict[str, int] = field(default_factory=dict)
    sync_running: int = 0
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def usage(self, caller: Caller) -> dict:
        unfinished, stored = self.store.usage(caller.id)
        return {
            "jobs": unfinished + self.inflight.get(caller.id, 0),
            "disk_bytes": stored + self.inflight_bytes.get(caller.id, 0),
        }

    def admit(self, caller: Caller, nbytes: int, *, sync: bool = False) -> Ticket:
        """Reserve room for one request of ``caller`` bringing at most ``nbytes``; :class:`QuotaError` if none."""
        used, limits = self.usage(caller), caller.quota
        if sync and self.sync_running >= self.max_sync:
            raise QuotaError(429, "busy", f"{self.sync_running} synchronous requests are running (limit "
                             f"{self.max_sync}); try again later or submit a job", self.retry_after_s)  # fmt: skip
        if limits.jobs is not None and used["jobs"] >= limits.jobs:
            raise QuotaError(429, "quota_jobs", f"this key has {used['jobs']} unfinished jobs (limit {limits.jobs}); "
                             "wait for one to finish", self.retry_after_s)  # fmt: skip
        if limits.disk_bytes is not None:
            if nbytes > limits.disk_bytes:
                raise QuotaError(413, "too_large", f"the upload ({nbytes} bytes) is larger than this key's disk "
                                 f"quota ({limits.disk_bytes} bytes)", 0)  # fmt: skip
            if used["disk_bytes"] + nbytes > limits.disk_bytes:
                raise QuotaError(429, "quota_disk", f"this key stores {used['disk_bytes']} bytes of uploads and "
                                 f"results (limit {limits.disk_bytes}); delete finished jobs or wait for them to "
                                 "expire", self.retry_after_s)  # fmt: skip
        wait = self._take(caller)
        if wait:
            raise QuotaError(429, "rate_limited", f"more than {limits.rate_per_min:g} new jobs a minute for this key",
                             wait)  # fmt: skip
        self.inflight[caller.id] = self.inflight.get(caller.id, 0) + 1
        self.inflight_bytes[caller.id] = self.inflight_bytes.get(caller.id, 0) + nbytes
        if sync:
            self.sync_running += 1
        return Ticket(self, caller, nbytes, sync)

    def _take(self, caller: Caller) -> int:
        """Take a token from the key's bucket: 0, or the whole seconds until one is there."""
        rate = caller.quota.rate_per_min
        if rate is None:
            return 0
        now = time.monotonic()
        bucket = self.buckets.setdefault(caller.id, _Bucket(rate, now))
        bucket.tokens = min(rate, bucket.tokens + (now - bucket.at) * rate / 60.0)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) * 60.0 / rate))

    def _release(self, ticket: Ticket) -> None:
        key = ticket.caller.id
        self.inflight[key] -= 1
        self.inflight_bytes[key] -= ticket.nbytes
        if not self.inflight[key]:
            del self.inflight[key], self.inflight_bytes[key]
        if ticket.sync:
            self.sync_running -= 1
