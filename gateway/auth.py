"""Who is calling: API keys, stored hashed in a file the gateway rereads when it changes.

The keys file (a Kubernetes Secret in the chart) has one key per line; ``s2s gateway-key`` makes both
the key and its line:

    # <key id>  sha256:<hex digest of the key>  [jobs=N] [rate=N] [disk=SIZE]
    alice   sha256:3b1f...e9   jobs=4 rate=30 disk=10G
    ci-bot  sha256:90ad...c2

``jobs`` unfinished jobs at once (queued, running or synchronous), ``rate`` new jobs per minute and
``disk`` bytes of stored uploads and results override the gateway's defaults for that key. A key is
presented as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Keys are random 256-bit tokens, so one SHA-256 is enough to store them (no password stretching: there
is nothing to guess). The file holds no key itself, and the key id, never the key, is what the logs
and job records name. Rotation needs no restart: add the new key's line, hand the key out, remove the
old line; the file is checked on use (at most every ``check_interval_s``) and a file that no longer
parses keeps the previous keys in force and is logged, so a typo neither locks everyone out nor
opens the door.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from s2s.errors import S2SError
from s2s.flags import format_size, parse_size

log = logging.getLogger(__name__)

KEY_PREFIX = "s2s_"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")


class KeyFileError(S2SError):
    """The keys file cannot be read or has a line that does not parse (names the file and the line)."""


@dataclass(frozen=True)
class Quota:
    """What one key may use; ``None`` is unbounded (the anonymous caller of ``--no-auth``)."""

    jobs: int | None  #: unfinished jobs at once, synchronous requests included
    rate_per_min: float | None  #: new jobs per minute (a burst of this many, refilled evenly)
    disk_bytes: int | None  #: stored uploads and results

    def describe(self) -> dict:
        return {"jobs": self.jobs, "jobs_per_minute": self.rate_per_min, "disk_bytes": self.disk_bytes}


UNBOUNDED = Quota(None, None, None)


@dataclass(frozen=True)
class Caller:
    id: str  #: the key id ("" without authentication); jobs belong to it
    quota: Quota


ANONYMOUS = Caller("", UNBOUNDED)


def new_key() -> str:
    """A fresh API key: 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_line(key_id: str, key: str, *, jobs: int | None = None, rate: float | None = None,
             disk: int | None = None) -> str:  # fmt: skip
    """The keys-file line for ``key`` (only its hash is written)."""
    if not ID_PATTERN.match(key_id):
        raise KeyFileError(f"key id {key_id!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    options = [f"jobs={jobs}"] if jobs is not None else []
    options += [f"rate={rate:g}"] if rate is not None else []
    options += [f"disk={format_size(disk)}"] if disk is not None else []
    return " ".join([key_id, hash_key(key), *options])


def parse_keys(text: str, defaults: Quota, source: str = "keys file") -> dict[str, Caller]:
    """hash -> caller for every line of a keys file; :class:`KeyFileError` names the first bad line."""
    callers: dict[str, Caller] = {}
    ids: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}, line {number}"
        fields = line.split()
        if len(fields) < 2:
            raise KeyFileError(f"{where}: expected '<key id> sha256:<hash> [options]'")
        key_id, digest, *options = fields
        if not ID_PATTERN.match(key_id):
            raise KeyFileError(f"{where}: bad key id {key_id!r}")
        if key_id in ids:
            raise KeyFileError(f"{where}: key id {key_id!r} appears twice")
        if not _HASH.match(digest):
            raise KeyFileError(f"{where}: expected sha256:<64 hex digits> after the id (made by s2s gateway-key)")
        if digest in callers:
            raise KeyFileError(f"{where}: the same key is already listed as {callers[digest].id!r}")
        quota = defaults
        for option in options:
            name, _, value = option.partition("=")
            try:
                if name == "jobs":
                    quota = replace(quota, jobs=_positive(int(value)))
                elif name == "rate":
                    quota = replace(quota, rate_per_min=_positive(float(value)))
                elif name == "disk":
                    quota = replace(quota, disk_bytes=_positive(parse_size(value)))
                else:
                    raise KeyFileError(f"{where}: unknown option {name!r} (jobs=, rate=, disk=)")
            except (ValueError, argparse.ArgumentTypeError) as exc:
                raise KeyFileError(f"{where}: bad value in {option!r}: {exc}") from None
        ids.add(key_id)
        callers[digest] = Caller(key_id, quota)
    return callers


def _positive(value):
    if value <= 0:
        raise ValueError("must be above 0")
    return value


class KeyRing:
    """The keys of a keys file, reread when the file changes (mtime, size or inode, so a Secret's swap
    of its ``..data`` link counts)."""

    def __init__(self, path: Path, defaults: Quota, check_interval_s: float = 2.0) -> None:
        self.path, self.defaults, self.check_interval_s = Path(path), defaults, check_interval_s
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._callers = self._read()  # a bad file at start is fatal: KeyFileError
        self._checked = time.monotonic()
        if not self._callers:
            log.warning("the keys file %s lists no key: every request will be refused", self.path)

    def _stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise KeyFileError(f"cannot read the keys file {self.path}: {exc.strerror}") from None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> dict[str, Caller]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read the keys file {self.path}: {exc}") from None
        return parse_keys(text, self.defaults, str(self.path))

    def refresh(self) -> None:
        """Reread the file if it changed; a file that does not parse keeps the keys in force."""
        with self._lock:
            self._checked = time.monotonic()
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return
                callers = self._read()
            except KeyFileError as exc:
                log.error("keys file not reloaded, the previous keys stay in force: %s", exc)
                return
            self._stamp, self._callers = stamp, callers
            log.info("keys file reloaded: %d key(s)", len(callers))

    def lookup(self, key: str | None) -> Caller | None:
        """The caller holding ``key``, or None."""
        if time.monotonic() - self._checked >= self.check_interval_s:
            self.refresh()
        if not key:
            return None
        return self._callers.get(hash_key(key))

    def __len__(self) -> int:
        return len(self._callers)


def read_secret(path: Path) -> str:
    """A single secret (the metrics key) from a file, stripped."""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc}") from None
    if len(value) < 16:
        raise KeyFileError(f"the key in {path} is shorter than 16 characters")
    return value


def same_secret(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
