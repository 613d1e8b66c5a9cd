"""Scale-out behaviour, with real processes on loopback: windows as units of work (parallel, kept as they
arrive, retried), resumption after a gateway is killed, the retry endpoint, cancellation, and gRPC
client-side balancing over two embedded Triton servers."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
import urllib.request
import wave

import httpx
import numpy as np
import pytest

from s2s.bench.measure import metric_sum as metric
from s2s.cli import main
from s2s.client.mux import pcm16
from s2s.client.triton import S2SClient
from s2s.runtime.server import free_ports
from s2s.synth import make_video
from tests.conftest import Serve, export_small_repository, small_windows, wait_until_gone
from tests.test_gateway import Gateway

#: 3.9 s: five 20-frame windows in the small repository (one every 16 frames)
CLIP_S = 3.9
WINDOWS = small_windows(CLIP_S)


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    return export_small_repository(tmp_path_factory.mktemp("scale-repo"))


@pytest.fixture(scope="module")
def clip() -> bytes:
    return make_video(duration_s=CLIP_S, fps=20.0, seed=16)


@pytest.fixture(scope="module")
def reference(repository, clip, tmp_path_factory) -> np.ndarray:
    """The clip's sound from one request for the whole video, as the 16-bit PCM a job's audio.wav holds."""
    serve = Serve(repository, tmp_path_factory.mktemp("ref-serve")).start().wait_ready(timeout_s=300)
    try:
        with S2SClient(serve.grpc_url) as client:
            waveform = client.generate(clip).waveform
    finally:
        serve.stop()
    return pcm16(waveform)


def start_triton(repository, workdir, ports: list[int] | None = None) -> Serve:
    workdir.mkdir(parents=True, exist_ok=True)
    serve = Serve(repository, workdir)
    if ports:
        serve.ports = ports
    return serve.start().wait_ready(timeout_s=300)


def kill_triton(serve: Serve) -> None:
    """SIGKILL to `s2s serve` and to its server's process group (server and stubs), as when a pod dies for
    good: nothing shuts down, nothing finishes (killing only the server would see it started again by
    `s2s serve`; killing only `s2s serve` lets the server finish its requests in flight, test_serve.py)."""
    pgid = serve.server_pid
    serve.proc.kill()
    serve.proc.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    assert not wait_until_gone(pgid=pgid, timeout_s=30)


def triton_metrics(serve: Serve) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{serve.ports[2]}/metrics", timeout=10) as response:
        return response.read().decode()


def served(serve: Serve) -> float:
    """Requests the ``s2s`` ensemble of one server answered, from its own Prometheus metrics."""
    return metric(triton_metrics(serve), "nv_inference_request_success", model="s2s")


def served_once_quiet(serve: Serve, timeout_s: float = 120) -> float:
    """:func:`served` once it has stopped changing: unchanged for four of this server's mean window times
    (at least 5 s, over Triton's 2 s metrics refresh). Windows that went on one after another would keep
    changing it; a slow machine's last window in flight only delays the answer."""
    text = triton_metrics(serve)
    count = metric(text, "nv_inference_request_success", model="s2s")
    mean_s = metric(text, "nv_inference_request_duration_us", model="s2s") / 1e6 / max(count, 1.0)
    quiet_s = max(5.0, 4 * mean_s)
    deadline = time.monotonic() + timeout_s
    last, since = count, time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"Triton's answered requests never settled ({last})"
        time.sleep(0.25)
        if (now := served(serve)) != last:
            last, since = now, time.monotonic()
    return last


def job_audio(gw: Gateway, job_id: str) -> np.ndarray:
    response = gw.http.get(f"/v1/jobs/{job_id}/audio")
    assert response.status_code == 200, response.text
    with wave.open(io.BytesIO(response.content)) as handle:
        return np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")


def same_sound(got: np.ndarray, want: np.ndarray) -> None:
    """Same length; the same samples within the float tolerance of window ranges vs one request (1e-4)."""
    assert got.shape == want.shape
    assert np.abs(got.astype(np.int32) - want).max() <= 4


def wait_for_windows(gw: Gateway, job_id: str, done: int, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = gw.http.get(f"/v1/jobs/{job_id}").json()
        if state["windows_done"] >= done or state["status"] in ("done", "failed"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id}: fewer than {done} windows after {timeout_s} s")


def kept_windows(data, job_id: str) -> int:
    """Window results a job has on the data volume."""
    return len(list((data / "jobs" / job_id / "windows").glob("*.npz")))


def finish_on_a_new_gateway(triton: Serve, data, job_id: str, reference: np.ndarray, kept: int) -> tuple[dict, str]:
    """A fresh gateway on ``data`` finishes the job: done, the unfaulted sound, and only the windows that
    were not kept sent to Triton. Returns the job's final state and that gateway's metrics."""
    again = Gateway(triton.grpc_url, data)
    try:
        final = again.wait(job_id)
        assert final["status"] == "done" and final["windows_done"] == WINDOWS and final["error"] is None, final
        same_sound(job_audio(again, job_id), reference)
        metrics = again.http.get("/metrics").text
        assert metric(metrics, "s2s_gateway_windows_total", outcome="done") == WINDOWS - kept
        return final, metrics
    finally:
        again.stop()


def test_a_killed_gateway_s_job_goes_on_from_its_finished_windows(repository, clip, reference, tmp_path):
    triton = start_triton(repository, tmp_path / "triton")
    data = tmp_path / "data"
    gw = Gateway(triton.grpc_url, data, "--windows-per-job", "1")
    try:
        job = gw.upload(clip).json()
        state = wait_for_windows(gw, job["id"], 2)
        assert state["status"] == "running" and state["windows_total"] == WINDOWS
        gw.proc.kill()  # SIGKILL: no shutdown, no hand-back
        gw.proc.wait()
        kept = kept_windows(data, job["id"])
        assert kept >= 2
        _, metrics = finish_on_a_new_gateway(triton, data, job["id"], reference, kept)
        assert metric(metrics, "s2s_gateway_job_takeovers_total") == 1
    finally:
        if gw.proc.poll() is None:
            gw.stop()
        triton.stop()


def test_a_stopping_gateway_finishes_its_windows_in_flight_and_hands_its_job_back(
    repository, clip, reference, tmp_path
):
    triton = start_triton(repository, tmp_path / "triton")
    data = tmp_path / "data"
    gw = Gateway(triton.grpc_url, data, "--windows-per-job", "1", "--drain", "30")
    try:
        job = gw.upload(clip).json()
        at_stop = wait_for_windows(gw, job["id"], 1)["windows_done"]
        gw.stop()  # SIGTERM
        assert gw.proc.returncode in (0, -15)  # uvicorn re-raises the SIGTERM it handled, once it has shut down
        record = json.loads((data / "jobs" / job["id"] / "job.json").read_text())
        kept = kept_windows(data, job["id"])
        assert record["status"] == "queued" and record["lease_owner"] == "", "handed back to the queue"
        assert kept == record["windows_done"] >= at_stop and kept < WINDOWS
        final, _ = finish_on_a_new_gateway(triton, data, job["id"], reference, kept)
        assert final["takeovers"] == 0, final  # handed back, not taken over
    finally:
        if gw.proc.poll() is None:
            gw.stop()
        triton.stop()


def test_a_job_that_failed_while_triton_was_down_is_retried_without_a_new_upload(repository, clip, reference, tmp_path):
    triton = start_triton(repository, tmp_path / "triton")
    gw = Gateway(triton.grpc_url, tmp_path / "data", "--windows-per-job", "1", "--retry-budget", "1")
    try:
        job = gw.upload(clip).json()
        wait_for_windows(gw, job["id"], 2)
        kill_triton(triton)
        failed = gw.wait(job["id"])
        assert failed["status"] == "failed" and failed["error"]["code"] == "triton_unavailable"
        assert failed["error"]["retryable"] is True and "retry" in failed["error"]["message"]
        assert gw.http.post(f"/v1/jobs/{job['id']}/retry").status_code == 503  # still down: try later
        kept = failed["windows_done"]
        triton = start_triton(repository, tmp_path / "triton2", ports=triton.ports)
        deadline = time.monotonic() + 30
        while (retried := gw.http.post(f"/v1/jobs/{job['id']}/retry")).status_code == 503:
            assert time.monotonic() < deadline, "the gateway did not see the server come back"
            time.sleep(0.5)
        assert retried.status_code == 202 and retried.json()["status"] == "queued", retried.text
        final = gw.wait(job["id"])
        assert final["status"] == "done", final
        same_sound(job_audio(gw, job["id"]), reference)
        assert served(triton) == WINDOWS - kept  # the new server computed only what was missing
        again = gw.http.post(f"/v1/jobs/{job['id']}/retry")
        assert again.status_code == 409 and again.json()["error"]["code"] == "not_retryable"
    finally:
        gw.stop()
        triton.stop()


def test_deleting_a_running_job_or_leaving_a_synchronous_request_stops_its_windows(repository, tmp_path):
    triton = start_triton(repository, tmp_path / "triton")
    gw = Gateway(triton.grpc_url, tmp_path / "data", "--windows-per-job", "1", key_options="jobs=10")
    long_clip = make_video(duration_s=CLIP_S, fps=20.0, seed=17)
    try:
        job = gw.upload(long_clip).json()
        done = wait_for_windows(gw, job["id"], 1)["windows_done"]
        assert gw.http.delete(f"/v1/jobs/{job['id']}").status_code == 204
        # one window at a time: the one in flight at the delete runs to its end inside Triton, and one more
        # may have been sent between reading `done` and the delete; the rest never are
        assert served_once_quiet(triton) <= min(done + 2, WINDOWS - 1), "windows went on after the job was deleted"
        assert not (tmp_path / "data" / "jobs" / job["id"]).exists()

        # a synchronous client that gives up: its remaining windows are not sent
        start = served(triton)
        with pytest.raises(httpx.TimeoutException):
            gw.http.post("/v1/generate", files={"file": ("a.mp4", long_clip, "video/mp4")}, timeout=1.5)
        assert served_once_quiet(triton) < start + WINDOWS, "windows went on after the client left"
        assert gw.http.get("/readyz").status_code == 200
    finally:
        gw.stop()
        triton.stop()


def test_windows_spread_over_two_triton_servers_and_survive_one_dying(repository, clip, reference, tmp_path):
    """`--triton-url ipv4:A,B` balances round-robin; killing B mid-job sends its windows to A."""
    a = start_triton(repository, tmp_path / "a")
    b = start_triton(repository, tmp_path / "b")
    target = f"ipv4:{a.grpc_url},{b.grpc_url}"
    gw = Gateway(target, tmp_path / "data", "--windows-per-job", "2", key_options="jobs=10")
    try:
        first = gw.upload(clip).json()
        assert gw.wait(first["id"])["status"] == "done"
        split = (served(a), served(b))
        assert sum(split) == WINDOWS and min(split) >= 1, f"both servers answer windows of one job: {split}"
        same_sound(job_audio(gw, first["id"]), reference)

        second = gw.upload(clip).json()
        wait_for_windows(gw, second["id"], 1)
        kill_triton(b)
        final = gw.wait(second["id"])
        assert final["status"] == "done", final
        same_sound(job_audio(gw, second["id"]), reference)
        assert served(a) > split[0]
    finally:
        gw.stop()
        a.stop()
        b.stop()


def test_two_gateways_on_postgres_lose_nothing_when_a_gateway_and_a_triton_die(repository, postgres, tmp_path, capsys):
    """Two Triton servers, two gateways sharing PostgreSQL and one data volume, eight short jobs; SIGKILL
    one gateway and one Triton while windows are in flight: every accepted job ends done, with the sound
    of an unfaulted run."""
    a = start_triton(repository, tmp_path / "a")
    b = start_triton(repository, tmp_path / "b")
    clips = [make_video(duration_s=2.0, fps=20.0, seed=30 + i) for i in range(4)]
    with S2SClient(a.grpc_url) as client:  # unfaulted: one request per clip
        want = [pcm16(client.generate(c).waveform) for c in clips]
    shared = ("--store", postgres.database(), "--lease", "3", "--workers", "2", "--windows-per-job", "2")
    target, data = f"ipv4:{a.grpc_url},{b.grpc_url}", tmp_path / "shared-volume"
    gateways = [Gateway(target, data, *shared, key_options="jobs=20 rate=1000") for _ in range(2)]
    survivor = gateways[1]
    began = time.monotonic()
    try:
        jobs = [(gateways[i % 2].upload(clips[i % 4]).json()["id"], i % 4) for i in range(8)]
        deadline = time.monotonic() + 120
        while sum(survivor.http.get(f"/v1/jobs/{j}").json()["windows_done"] for j, _ in jobs) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        gateways[0].proc.kill()  # both at once, with windows in flight
        kill_triton(b)
        finals = [survivor.wait(job_id, timeout_s=300) for job_id, _ in jobs]
        seconds = time.monotonic() - began
        assert [f["status"] for f in finals] == ["done"] * 8, finals
        for job_id, clip in jobs:
            same_sound(job_audio(survivor, job_id), want[clip])
        windows = sum(f["windows_total"] for f in finals)
        retries, takeovers = sum(f["retries"] for f in finals), sum(f["takeovers"] for f in finals)
        assert takeovers >= 1, "the killed gateway's jobs were taken over"
        with capsys.disabled():
            print(f"\nfault test: 8 jobs, {windows} windows, {retries} window retries, {takeovers} takeovers, "
                  f"{seconds:.1f} s (gateway and Triton killed after 4 windows)")  # fmt: skip
    finally:
        for gw in gateways:
            if gw.proc.poll() is None:
                gw.stop()
        a.stop()
        b.stop()


def test_readiness_follows_the_job_store(tmp_path):
    """PostgreSQL away: the gateway is unready and answers 503 (never 500); back: ready again. A gateway
    whose store cannot be reached at start says so and exits."""
    from tests.conftest import Postgres

    (dead,) = free_ports(1)
    assert main(["gateway", "--no-auth", "--data-dir", str(tmp_path / "x"),
                 "--store", f"postgresql://postgres@127.0.0.1:{dead}/s2s"]) == 1  # fmt: skip
    database = Postgres()
    gw = Gateway(f"127.0.0.1:{dead}", tmp_path / "data", "--store", database.url)
    try:
        assert gw.http.get("/readyz", params={"triton": "false"}).status_code == 200
        assert gw.http.get("/readyz").status_code == 503  # Triton is not there
        database.pause()
        unready = gw.http.get("/readyz", params={"triton": "false"})
        assert unready.status_code == 503 and unready.json()["error"]["code"] == "store_unavailable"
        listing = gw.http.get("/v1/me")
        assert listing.status_code == 503 and listing.json()["error"]["retryable"] is True
        assert gw.http.get("/healthz").status_code == 200
        database.resume()
        deadline = time.monotonic() + 30
        while gw.http.get("/readyz", params={"triton": "false"}).status_code != 200:
            assert time.monotonic() < deadline, "ready again once the database is back"
            time.sleep(0.5)
        assert gw.http.get("/v1/me").status_code == 200
    finally:
        gw.stop()
        database.stop()
