"""The gateway's job store: ids that cannot escape the data directory, recovery, expiry."""

from __future__ import annotations

import time

import pytest

from s2s.gateway.jobs import Job, JobStore


def test_ids_are_random_and_validated(tmp_path):
    store = JobStore(tmp_path)
    ids = {store.new_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 22 for i in ids)
    for bad in ("../../etc/passwd", "..", "", "a/b", "x" * 22 + "/", "AAAAAAAAAAAAAAAAAAAA.."):
        with pytest.raises(KeyError):
            store.folder(bad)
    with pytest.raises(ValueError, match="not a job file"):
        store.path(store.new_id(), "../job.json")


def test_round_trip_and_atomic_state(tmp_path):
    store = JobStore(tmp_path)
    job = store.create(Job(id=store.new_id(), filename="../../evil name.mp4", size_bytes=3), b"abc")
    assert store.path(job.id, "input").read_bytes() == b"abc"
    assert store.path(job.id, "input").parent.parent == tmp_path / "jobs"  # the file name plays no part
    job.status, job.windows_total, job.windows_done = "running", 4, 1
    store.save(job)
    again = store.load(job.id)
    assert again.status == "running" and again.public()["progress"] == 0.25
    assert not list((tmp_path / "jobs" / job.id).glob("*.tmp"))


def test_recover_fails_unfinished_jobs_as_retryable(tmp_path):
    store = JobStore(tmp_path)
    running = store.create(Job(id=store.new_id(), status="running"), b"x")
    done = store.create(Job(id=store.new_id(), status="done", finished_at=time.time()), b"x")
    interrupted = JobStore(tmp_path).recover()
    assert [j.id for j in interrupted] == [running.id]
    lost = store.load(running.id)
    assert lost.status == "failed" and lost.error.retryable and lost.error.code == "interrupted"
    assert store.load(done.id).status == "done"


def test_expire_removes_only_old_finished_jobs(tmp_path):
    store = JobStore(tmp_path)
    now = time.time()
    old = store.create(Job(id=store.new_id(), status="done", finished_at=now - 7200), b"x")
    fresh = store.create(Job(id=store.new_id(), status="failed", finished_at=now - 60), b"x")
    queued = store.create(Job(id=store.new_id(), status="queued"), b"x")
    assert store.expire(ttl_s=3600, now=now) == [old.id]
    with pytest.raises(KeyError):
        store.load(old.id)
    assert store.load(fresh.id) and store.load(queued.id)
