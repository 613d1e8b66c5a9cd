"""Jobs: their records and queue (a :class:`JobStore`), and their files on a data directory.

Files, the same for every store (one volume, shared by all gateways when there are several):

    <data>/jobs/<id>/input                        the upload, as received
    <data>/jobs/<id>/windows/w<start>-<count>.npz  the result of each window request, as it arrives
    <data>/jobs/<id>/video.mp4                    the result: the video with its new sound
    <data>/jobs/<id>/audio.wav                    the result: the sound alone
    <data>/jobs/<id>/spectrogram.png              the result: its generated mel as a picture (s2s.pictures)
    <data>/uploads/<id>.partial                   an upload while it streams in (moved into its job folder)

Records and the queue: :class:`FolderJobStore` keeps them in ``<data>/jobs/<id>/job.json`` (one gateway:
the embedded default, nothing to install); :class:`s2s.gateway.pgstore.PostgresJobStore` keeps them in
PostgreSQL (any number of gateways). A job is taken from the queue with a lease that its gateway renews
while it works; a job whose lease ran out (its gateway died) is taken over by another, and goes on from
its last finished window, since each window's result is on the volume.

Job ids are random (``secrets.token_urlsafe``) and validated against a strict pattern before any path
is built from them; nothing the user sends (file names included) becomes part of a path.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from s2s.errors import S2SError

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")
FINISHED = ("done", "failed", "cancelled")
RESULT_FILES = ("input", "video.mp4", "audio.wav", "spectrogram.png")
#: a window request's result: ``w<start>-<count>.npz`` (results of servers whose windows butted, kept as
#: ``<start>-<count>.npz``, are not used: their windows are other frames; those windows are sent again)
_PIECE = re.compile(r"^w(\d+)-(\d+)\.npz$")


class StoreUnavailableError(S2SError, RuntimeError):
    """The store of job records cannot be reached (HTTP 503, retry later)."""


@dataclass
class JobError:
    code: str  #: invalid_video, triton_unavailable, internal, cancelled
    message: str
    retryable: bool = False


@dataclass
class Job:
    id: str
    owner: str = ""  #: the key id that created it ("" without authentication); only it sees the job
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    filename: str = ""  #: as uploaded, for display only
    content_type: str = ""
    size_bytes: int = 0
    windows_total: int | None = None
    windows_done: int = 0
    duration_s: float | None = None
    #: seconds of sound asked for a still image (None: the server's default; videos have their own)
    still_duration_s: float | None = None
    processing_s: float | None = None
    video_copied: bool | None = None
    error: JobError | None = None
    retries: int = 0  #: window requests sent again after the inference server was unavailable
    takeovers: int = 0  #: times the job was taken up again after its gateway stopped or died
    lease_owner: str = ""  #: the gateway working on it (while running)
    lease_until: float = 0.0  #: wall-clock time its lease ends unless renewed

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def public(self) -> dict:
        data = asdict(self)
        data["progress"] = (self.windows_done / self.windows_total) if self.windows_total else 0.0
        return data

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if data.get("error"):
            known = JobError.__dataclass_fields__
            data["error"] = JobError(**{k: v for k, v in data["error"].items() if k in known})
        return cls(**data)


@dataclass
class Piece:
    """The result of one window request: windows ``[start, start + count)`` of a video of ``total``, whose
    sound starts at ``offset`` (sample, mel frame) in the whole video's."""

    start: int
    count: int
    total: int
    waveform: np.ndarray
    mel: np.ndarray
    offset: tuple[int, int] = (0, 0)


class JobStore:
    """Where jobs live: the files (here) and the records and queue (a subclass).

    A subclass keeps records and the queue: ``create`` (after the files), ``load``, ``save``, ``all``,
    ``claim`` / ``renew`` / ``release`` (the queue with leases), ``queued``, ``_forget`` (the record).
    """

    #: what a gateway may run next to others on the same store (False: one gateway only)
    shared = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir = self.root / "uploads"
        self.uploads_dir.mkdir(exist_ok=True)
        #: jobs a previous process left running, queued again at start (a shared store's leases do this instead)
        self.resumed: list[Job] = []

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(16)  # 22 characters, 128 random bits

    def folder(self, job_id: str) -> Path:
        """The job's folder; ``KeyError`` for anything that is not a well-formed id."""
        if not isinstance(job_id, str) or not ID_PATTERN.match(job_id):
            raise KeyError(job_id)
        return self.jobs_dir / job_id

    def path(self, job_id: str, name: str) -> Path:
        if name not in RESULT_FILES:
            raise ValueError(f"not a job file: {name}")
        return self.folder(job_id) / name

    # -- files --------------------------------------------------------------------------------------

    def create(self, job: Job, data: bytes | Path) -> Job:
        """A new job with its input (the bytes, or an upload on this filesystem moved into place), queued."""
        folder = self.folder(job.id)
        folder.mkdir(parents=True)
        if isinstance(data, Path):
            os.replace(data, folder / "input")
        else:
            (folder / "input").write_bytes(data)
        return job

    def drop_input(self, job_id: str) -> None:
        """Delete a job's input once it can no longer be used (a failure that retrying cannot fix)."""
        self.path(job_id, "input").unlink(missing_ok=True)
        shutil.rmtree(self.folder(job_id) / "windows", ignore_errors=True)

    def has_input(self, job_id: str) -> bool:
        return self.path(job_id, "input").exists()

    def save_piece(self, job_id: str, piece: Piece) -> None:
        """Keep a window request's result (atomically); ``KeyError`` if the job was deleted meanwhile."""
        folder = self.folder(job_id)
        if not folder.is_dir():
            raise KeyError(job_id)
        windows = folder / "windows"
        windows.mkdir(exist_ok=True)
        name = f"w{piece.start}-{piece.count}.npz"
        tmp = windows / f".{name}.{secrets.token_hex(4)}.tmp"
        with tmp.open("wb") as out:
            np.savez(out, waveform=piece.waveform, mel=piece.mel, total=np.int32(piece.total),
                     offset=np.array(piece.offset, dtype=np.int32))  # fmt: skip
        os.replace(tmp, windows / name)

    def pieces(self, job_id: str) -> dict[int, int]:
        """The window requests already done: {start: count}."""
        found = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder(job_id) / "windows"):
                if match := _PIECE.match(entry.name):
                    found[int(match[1])] = int(match[2])
        return found

    def load_piece(self, job_id: str, start: int, count: int) -> Piece:
        with np.load(self.folder(job_id) / "windows" / f"w{start}-{count}.npz") as data:
            offset = tuple(int(v) for v in data["offset"])
            return Piece(start, count, int(data["total"]), data["waveform"], data["mel"], offset)

    def stored_bytes(self, job_id: str) -> int:
        stored = 0
        for name in RESULT_FILES:
            with contextlib.suppress(OSError, KeyError):
                stored += os.stat(self.path(job_id, name)).st_size
        return stored

    def delete(self, job_id: str) -> None:
        """The job's record and files, gone (a gateway working on it loses its lease)."""
        self._forget(job_id)
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def clean_uploads(self, older_than_s: float = 0.0) -> None:
        """Remove partial uploads nobody is receiving any more (``older_than_s``: other gateways may be)."""
        now = time.time()
        for stale in self.uploads_dir.glob("*.partial"):
            with contextlib.suppress(OSError):
                if now - stale.stat().st_mtime >= older_than_s:
                    stale.unlink()

    # -- records and queue (shared logic) -----------------------------------------------------------

    def usage(self, owner: str) -> tuple[int, int]:
        """(unfinished jobs, bytes stored in their folders) of ``owner``."""
        unfinished = stored = 0
        for job in self.all(owner):
            unfinished += not job.finished
            stored += self.stored_bytes(job.id)
        return unfinished, stored

    def retry(self, job: Job) -> Job:
        """A failed, retryable job back in the queue; it goes on from its finished windows."""
        job.status, job.error, job.finished_at = "queued", None, None
        job.lease_owner, job.lease_until = "", 0.0
        self.save(job)
        self._enqueue(job.id)
        return job

    def expire(self, ttl_s: float, now: float | None = None) -> list[str]:
        """Delete finished jobs older than ``ttl_s`` (results included)."""
        now = time.time() if now is None else now
        gone = []
        for job in self.all():
            if job.finished and (job.finished_at or job.updated_at) + ttl_s < now:
                self.delete(job.id)
                gone.append(job.id)
        return gone

    # -- records and queue (each store's own) -------------------------------------------------------

    def load(self, job_id: str) -> Job:
        raise NotImplementedError

    def save(self, job: Job) -> None:
        raise NotImplementedError

    def all(self, owner: str | None = None) -> list[Job]:
        raise NotImplementedError

    def submit(self, job: Job) -> None:
        """Record a new job (its files are in place) and queue it."""
        raise NotImplementedError

    def claim(self, worker: str, lease_s: float) -> Job | None:
        """The oldest queued job (or one whose lease ran out), now running under ``worker``'s lease."""
        raise NotImplementedError

    def renew(self, job: Job, worker: str, lease_s: float) -> bool:
        """Extend ``worker``'s lease on ``job`` and save its progress; False if the job is no longer its."""
        raise NotImplementedError

    def release(self, job: Job, worker: str) -> None:
        """Give a running job back to the queue (a gateway that stops); another takes it up."""
        raise NotImplementedError

    def queued(self) -> int:
        raise NotImplementedError

    def _enqueue(self, job_id: str) -> None:
        raise NotImplementedError

    def _forget(self, job_id: str) -> None:
        raise NotImplementedError

    def ping(self) -> bool:
        """Whether the store answers (readiness)."""
        return self.jobs_dir.is_dir()

    def close(self) -> None:
        pass


class FolderJobStore(JobStore):
    """Records as ``job.json`` in each job's folder, the queue in this process: one gateway per folder.

    At start, jobs a previous gateway left queued or running go back into the queue (oldest first), so a
    restart or a crash loses nothing: they go on from their last finished window.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._owner = (self.root / ".folder-store.lock").open("a")  # held while this process lives
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._owner.close()
            from s2s.errors import OptionError

            raise OptionError(
                f"another gateway uses {self.root} with the folder store, which serves one gateway: stop it, or "
                "give both --store postgresql://..."
            ) from None
        self.clean_uploads()  # uploads a previous process was receiving
        self._lock = threading.Lock()
        self._queue: collections.deque[str] = collections.deque()
        for job in sorted(self.all(), key=lambda j: j.created_at):
            if not job.finished:
                if job.status == "running":
                    job.takeovers += 1
                    self.resumed.append(job)
                job.status, job.lease_owner, job.lease_until = "queued", "", 0.0
                self.save(job)
                self._queue.append(job.id)

    def load(self, job_id: str) -> Job:
        try:
            return Job.from_dict(json.loads((self.folder(job_id) / "job.json").read_text()))
        except FileNotFoundError:
            raise KeyError(job_id) from None

    def save(self, job: Job) -> None:
        job.updated_at = time.time()
        folder = self.folder(job.id)
        tmp = folder / f"job.json.{secrets.token_hex(4)}.tmp"
        try:
            tmp.write_text(job.to_json())
        except FileNotFoundError:
            raise KeyError(job.id) from None  # deleted meanwhile
        os.replace(tmp, folder / "job.json")

    def all(self, owner: str | None = None) -> list[Job]:
        jobs = []
        for folder in self.jobs_dir.iterdir():
            try:
                job = self.load(folder.name)
            except (KeyError, ValueError, TypeError):
                continue  # a foreign or half-written folder: leave it alone
            if owner is None or job.owner == owner:
                jobs.append(job)
        return jobs

    def submit(self, job: Job) -> None:
        self.save(job)
        self._enqueue(job.id)

    def claim(self, worker: str, lease_s: float) -> Job | None:
        while True:
            with self._lock:
                if not self._queue:
                    return None
                job_id = self._queue.popleft()
            try:
                job = self.load(job_id)
            except KeyError:
                continue  # deleted while queued
            if job.status != "queued":
                continue
            job.status, job.lease_owner, job.lease_until = "running", worker, time.time() + lease_s
            self.save(job)
            return job

    def renew(self, job: Job, worker: str, lease_s: float) -> bool:
        if not self.folder(job.id).is_dir():
            return False  # deleted
        job.lease_until = time.time() + lease_s
        self.save(job)
        return True

    def release(self, job: Job, worker: str) -> None:
        if not self.folder(job.id).is_dir():
            return
        job.status, job.lease_owner, job.lease_until = "queued", "", 0.0
        self.save(job)
        with self._lock:
            self._queue.appendleft(job.id)

    def queued(self) -> int:
        return len(self._queue)

    def _enqueue(self, job_id: str) -> None:
        with self._lock:
            self._queue.append(job_id)

    def _forget(self, job_id: str) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._queue.remove(job_id)

    def close(self) -> None:
        self._owner.close()


def open_store(url: str, root: Path) -> JobStore:
    """The store a gateway is configured with: ``""`` for the folder store, ``postgresql://...`` for PostgreSQL."""
    if not url:
        return FolderJobStore(root)
    if url.startswith(("postgresql://", "postgres://")):
        from s2s.gateway.pgstore import PostgresJobStore

        return PostgresJobStore(url, root)
    from s2s.errors import OptionError

    scheme = url.split(":", 1)[0]
    raise OptionError(f"unknown store {scheme!r}: leave --store empty (folder) or give a postgresql:// URL")
