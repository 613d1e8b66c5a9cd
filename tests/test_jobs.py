"""The gateway's job stores: ids that cannot escape the data directory, the queue with leases (folder, and a
real PostgreSQL shared by two stores as by two gateways), resumption, window results, expiry."""

from __future__ import annotations

import time

import numpy as np
import pytest

from s2s.gateway.jobs import FolderJobStore as JobStore
from s2s.gateway.jobs import Job, Piece
from s2s.gateway.runner import join_pieces, plan_requests


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
    store.submit(job)
    assert store.path(job.id, "input").read_bytes() == b"abc"
    assert store.path(job.id, "input").parent.parent == tmp_path / "jobs"  # the file name plays no part
    job.status, job.windows_total, job.windows_done = "running", 4, 1
    store.save(job)
    again = store.load(job.id)
    assert again.status == "running" and again.public()["progress"] == 0.25
    assert not list((tmp_path / "jobs" / job.id).glob("*.tmp"))


def test_queue_leases_and_resumption_after_a_crash(tmp_path):
    store = JobStore(tmp_path)
    first, second = (store.create(Job(id=store.new_id(), created_at=t), b"x") for t in (1.0, 2.0))
    for job in (first, second):
        store.submit(job)
    assert store.queued() == 2
    claimed = store.claim("gw-a", lease_s=30)
    assert claimed.id == first.id and claimed.status == "running" and claimed.lease_owner == "gw-a"
    assert store.claim("gw-a", 30).id == second.id and store.claim("gw-a", 30) is None
    store.release(claimed, "gw-a")  # a stopping gateway hands it back: it is next
    assert store.load(first.id).status == "queued" and store.claim("gw-b", 30).id == first.id
    # a crash: the next process finds both running and queues them again, oldest first, counted as taken over
    done = store.create(Job(id=store.new_id(), status="done", finished_at=time.time()), b"x")
    store.save(done)  # a record without queueing
    store.close()  # the process ends
    restarted = JobStore(tmp_path)
    assert sorted(j.id for j in restarted.resumed) == sorted([first.id, second.id])
    assert [restarted.claim("gw-c", 30).id for _ in range(2)] == [first.id, second.id]
    assert restarted.load(first.id).takeovers == 1 and restarted.load(done.id).status == "done"
    store.delete(second.id)  # deleted while running: its gateway's next renewal says it is no longer its
    assert restarted.renew(restarted.load(first.id), "gw-c", 30)
    assert restarted.renew(second, "gw-c", 30) is False


def test_window_results_are_kept_and_join_like_one_request(tmp_path):
    """Window results overlap where their windows do (20 samples, 2 mel frames here) and are added there."""
    store = JobStore(tmp_path)
    job = store.create(Job(id=store.new_id()), b"x")
    rng = np.random.default_rng(0)
    pieces = {k: (rng.uniform(-0.4, 0.4, 100).astype(np.float32), rng.random((80, 8)).astype(np.float32))
              for k in range(5)}  # fmt: skip
    whole = np.zeros(5 * 80 + 20, np.float32), np.zeros((80, 5 * 6 + 2), np.float32)
    for k, (wave, mel) in pieces.items():
        whole[0][80 * k : 80 * k + 100] += wave
        whole[1][:, 6 * k : 6 * k + 8] += mel

    def piece(start: int, count: int) -> Piece:
        wave, mel = np.zeros(80 * count + 20, np.float32), np.zeros((80, 6 * count + 2), np.float32)
        for i in range(count):
            wave[80 * i : 80 * i + 100] += pieces[start + i][0]
            mel[:, 6 * i : 6 * i + 8] += pieces[start + i][1]
        return Piece(start, count, 5, wave, mel, (80 * start, 6 * start))

    for start, count in ((0, 2), (3, 2)):
        store.save_piece(job.id, piece(start, count))
    assert store.pieces(job.id) == {0: 2, 3: 2}
    assert plan_requests(5, store.pieces(job.id), chunk=1) == [(2, 1)]
    assert plan_requests(7, {0: 2, 3: 2}, chunk=2) == [(2, 1), (5, 2)]
    assert plan_requests(3, {}, chunk=2) == [(0, 2), (2, 1)]
    kept = [store.load_piece(job.id, s, n) for s, n in sorted(store.pieces(job.id).items())]
    assert [p.offset for p in kept] == [(0, 0), (240, 18)]
    waveform, mel = join_pieces([*kept, piece(2, 1)])
    np.testing.assert_array_equal(waveform, whole[0])
    np.testing.assert_array_equal(mel, whole[1])
    with pytest.raises(RuntimeError, match="cover"):
        join_pieces(kept)
    # a result from a server whose windows butted (the old name) is not used: those windows are sent again
    np.savez(tmp_path / "jobs" / job.id / "windows" / "2-1.npz", waveform=whole[0], mel=whole[1], total=np.int32(5))
    assert store.pieces(job.id) == {0: 2, 3: 2}
    store.delete(job.id)
    with pytest.raises(KeyError):
        store.save_piece(job.id, piece(2, 1))  # a result arriving after its job was deleted is not kept


def test_expire_removes_only_old_finished_jobs(tmp_path):
    store = JobStore(tmp_path)
    now = time.time()
    old, fresh, queued = (
        store.create(job, b"x")
        for job in (Job(id=store.new_id(), status="done", finished_at=now - 7200),
                    Job(id=store.new_id(), status="failed", finished_at=now - 60), Job(id=store.new_id()))
    )  # fmt: skip
    for job in (old, fresh, queued):
        store.save(job)
    assert store.expire(ttl_s=3600, now=now) == [old.id]
    with pytest.raises(KeyError):
        store.load(old.id)
    assert store.load(fresh.id) and store.load(queued.id)


def test_the_folder_store_serves_one_gateway(tmp_path):
    from s2s.errors import OptionError

    first = JobStore(tmp_path)
    with pytest.raises(OptionError, match="one gateway"):
        JobStore(tmp_path)
    first.close()  # as when its process ends
    JobStore(tmp_path).close()


def test_postgres_store_one_queue_for_two_gateways_with_leases(postgres, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from s2s.gateway.pgstore import PostgresJobStore, describe

    url = postgres.database()
    a, b = PostgresJobStore(url, tmp_path), PostgresJobStore(url, tmp_path)  # one database, one volume
    try:
        assert a.ping() and "postgres@127.0.0.1" in describe(url)
        jobs = [a.create(Job(id=a.new_id(), owner="k", created_at=float(i)), b"x") for i in range(20)]
        for job in jobs:
            a.submit(job)
        assert b.queued() == 20 and b.load(jobs[0].id).owner == "k" and len(b.all("k")) == 20

        def drain(store, worker):
            taken = []
            while (job := store.claim(worker, lease_s=60)) is not None:
                taken.append(job.id)
            return taken

        with ThreadPoolExecutor(4) as pool:
            runs = list(pool.map(lambda sw: drain(*sw), [(a, "a1"), (a, "a2"), (b, "b1"), (b, "b2")]))
        taken = [job_id for run in runs for job_id in run]
        assert sorted(taken) == sorted(j.id for j in jobs), "every job taken exactly once"
        assert sum(bool(run) for run in runs) >= 2 and a.queued() == 0

        # a gateway that dies stops renewing: after its lease another takes the job over, and it cannot write
        job = Job(id=a.new_id(), owner="k")
        a.submit(a.create(job, b"x"))
        held = a.claim("dead", lease_s=0.5)
        assert held.id == job.id and b.claim("b1", 60) is None
        time.sleep(0.7)
        taken_over = b.claim("b1", 60)
        assert taken_over.id == job.id and taken_over.takeovers == 1 and taken_over.lease_owner == "b1"
        assert not a.renew(held, "dead", 60)
        a.release(held, "dead")  # too late: the job stays with b1
        assert b.load(job.id).lease_owner == "b1" and b.renew(taken_over, "b1", 60)
        # done, then a retry puts it back in the queue; deleting it ends its lease
        taken_over.status = "failed"
        assert b.renew(taken_over, "b1", 60)
        b.retry(b.load(job.id))
        again = a.claim("a1", 60)
        assert again.id == job.id and again.takeovers == 1
        b.delete(job.id)
        assert not a.renew(again, "a1", 60)
        with pytest.raises(KeyError):
            a.load(job.id)
        assert a.usage("k") == (20, 20)  # the twenty still running, one byte of input each
    finally:
        a.close()
        b.close()
