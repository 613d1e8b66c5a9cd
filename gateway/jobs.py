"""Jobs on disk: one folder per job under the gateway's data directory, so a restart loses nothing.

    <data>/jobs/<id>/job.json    state (written atomically)
    <data>/jobs/<id>/input       the upload, as received
    <data>/jobs/<id>/video.mp4   the result: the video with its new sound
    <data>/jobs/<id>/audio.wav   the result: the sound alone
    <data>/uploads/<id>.partial  an upload while it streams in (moved into its job folder when complete)

Job ids are random (``secrets.token_urlsafe``) and validated against a strict pattern before any path
is built from them; nothing the user sends (file names included) becomes part of a path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")
FINISHED = ("done", "failed", "cancelled")


@dataclass
class JobError:
    code: str  #: invalid_video, triton_unavailable, internal, interrupted, cancelled
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
    processing_s: float | None = None
    video_copied: bool | None = None
    error: JobError | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def public(self) -> dict:
        data = asdict(self)
        data["progress"] = (self.windows_done / self.windows_total) if self.windows_total else 0.0
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if data.get("error"):
            known = JobError.__dataclass_fields__
            data["error"] = JobError(**{k: v for k, v in data["error"].items() if k in known})
        return cls(**data)


class JobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir = self.root / "uploads"
        self.uploads_dir.mkdir(exist_ok=True)
        for stale in self.uploads_dir.glob("*.partial"):  # uploads a previous process was receiving
            stale.unlink(missing_ok=True)

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(16)  # 22 characters, 128 random bits

    def folder(self, job_id: str) -> Path:
        """The job's folder; ``KeyError`` for anything that is not a well-formed id."""
        if not isinstance(job_id, str) or not ID_PATTERN.match(job_id):
            raise KeyError(job_id)
        return self.jobs_dir / job_id

    def path(self, job_id: str, name: str) -> Path:
        if name not in ("input", "video.mp4", "audio.wav"):
            raise ValueError(f"not a job file: {name}")
        return self.folder(job_id) / name

    def create(self, job: Job, data: bytes | Path) -> Job:
        """A new job with its input: the bytes, or a file (an upload on this filesystem) moved into place."""
        folder = self.folder(job.id)
        folder.mkdir(parents=True)
        if isinstance(data, Path):
            os.replace(data, folder / "input")
        else:
            (folder / "input").write_bytes(data)
        self.save(job)
        return job

    def drop_input(self, job_id: str) -> None:
        """Delete a job's input once it can no longer be used (a failure that retrying cannot fix)."""
        self.path(job_id, "input").unlink(missing_ok=True)

    def save(self, job: Job) -> None:
        job.updated_at = time.time()
        folder = self.folder(job.id)
        tmp = folder / "job.json.tmp"
        tmp.write_text(json.dumps(asdict(job)))
        os.replace(tmp, folder / "job.json")

    def load(self, job_id: str) -> Job:
        try:
            return Job.from_dict(json.loads((self.folder(job_id) / "job.json").read_text()))
        except FileNotFoundError:
            raise KeyError(job_id) from None

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def all(self) -> list[Job]:
        jobs = []
        for folder in self.jobs_dir.iterdir():
            try:
                jobs.append(self.load(folder.name))
            except (KeyError, ValueError, TypeError):
                continue  # a foreign or half-written folder: leave it alone
        return jobs

    def usage(self, owner: str) -> tuple[int, int]:
        """(unfinished jobs, bytes stored in their folders) of ``owner``: one pass over the job records."""
        unfinished = stored = 0
        for job in self.all():
            if job.owner != owner:
                continue
            unfinished += not job.finished
            for name in ("input", "video.mp4", "audio.wav"):
                with contextlib.suppress(OSError):
                    stored += os.stat(self.path(job.id, name)).st_size
        return unfinished, stored

    def recover(self) -> list[Job]:
        """At start: jobs a previous gateway left queued or running are failed, retryable - never lost silently."""
        interrupted = []
        for job in self.all():
            if not job.finished:
                was = job.status
                job.status, job.finished_at = "failed", time.time()
                job.error = JobError(
                    "interrupted", f"the gateway restarted while this job was {was}; submit the video again",
                    retryable=True,
                )  # fmt: skip
                self.save(job)
                interrupted.append(job)
        return interrupted

    def expire(self, ttl_s: float, now: float | None = None) -> list[str]:
        """Delete finished jobs older than ``ttl_s`` (results included)."""
        now = time.time() if now is None else now
        gone = []
        for job in self.all():
            if job.finished and (job.finished_at or job.updated_at) + ttl_s < now:
                self.delete(job.id)
                gone.append(job.id)
        return gone
