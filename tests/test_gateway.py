"""The gateway as a real process over real HTTP, in front of the real embedded Triton; the page in Chromium."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest

from s2s.bench.measure import metric_sum as metric
from s2s.client.generate import probe_duration
from s2s.constants import REGNET
from s2s.gateway.auth import key_line, new_key
from s2s.runtime.server import free_ports
from s2s.synth import make_still, make_video
from tests.conftest import Serve, export_small_repository, small_windows

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Gateway:
    """`s2s gateway` as a child process on a free port, with a keys file holding the key of ``tester``
    (``self.key``, sent by ``self.http``) unless ``--no-auth`` is among ``extra``."""

    def __init__(self, triton_url: str, data_dir: Path, *extra: str, key_options: str = "") -> None:
        (self.port,) = free_ports(1)
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"gateway-{self.port}.log"
        self.audit_log = data_dir.parent / f"audit-{self.port}.jsonl"
        self.keys_file = data_dir.parent / f"keys-{self.port}.txt"
        self.key = new_key()
        auth = ["--no-auth"] if "--no-auth" in extra else ["--api-keys", str(self.keys_file)]
        if "--no-auth" not in extra:
            self.keys_file.write_text(f"# test keys\n{key_line('tester', self.key)} {key_options}\n")
        cmd = [sys.executable, "-m", "s2s", "gateway", "--port", str(self.port), "--triton-url", triton_url,
               "--data-dir", str(data_dir), "--audit-log", str(self.audit_log), *auth,
               *(e for e in extra if e != "--no-auth")]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        self.http = httpx.Client(base_url=self.url, timeout=60, headers=bearer(self.key))

    def add_key(self, key_id: str, options: str = "") -> str:
        """A new key in the keys file (the running gateway rereads it); returns the key."""
        key = new_key()
        with self.keys_file.open("a") as out:
            out.write(f"{key_line(key_id, key)} {options}\n")
        return key

    def audit(self) -> list[dict]:
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def upload(self, data: bytes, name: str = "clip.mp4", kind: str = "video/mp4") -> httpx.Response:
        return self.http.post("/v1/jobs", files={"file": (name, data, kind)})

    def wait(self, job_id: str, timeout_s: float = 180) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.http.get(f"/v1/jobs/{job_id}").json()
            if state["status"] in ("done", "failed", "cancelled"):
                return state
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} not finished after {timeout_s} s")


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    repo = tmp_path_factory.mktemp("gw-repo")
    export_small_repository(repo)
    serve = Serve(repo, tmp_path_factory.mktemp("gw-serve")).start().wait_ready(timeout_s=300)
    yield serve
    serve.stop()


@pytest.fixture(scope="module")
def gateway(triton, tmp_path_factory):
    # the module's tests share one key: a quota roomy enough for all of them (the quotas have their own test)
    gw = Gateway(
        triton.grpc_url, tmp_path_factory.mktemp("gw") / "data", "--max-upload", "2M", key_options="jobs=10 rate=1000"
    )
    yield gw
    gw.stop()


def test_upload_poll_download(gateway):
    video = make_video(duration_s=2.0, fps=20.0, seed=2)
    response = gateway.upload(video)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and len(job["id"]) == 22
    done = gateway.wait(job["id"])
    assert done["status"] == "done", done
    assert done["windows_total"] == done["windows_done"] == 3 and done["progress"] == 1.0
    mp4 = gateway.http.get(done["links"]["video"])
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(mp4.content)) as container:
        audio = container.streams.audio[0]
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert abs(float(audio.duration * audio.time_base) - probe_duration(video)) < 0.1
    wav = gateway.http.get(done["links"]["audio"])
    with wave.open(io.BytesIO(wav.content)) as handle:
        assert handle.getframerate() == REGNET.sample_rate
        assert handle.getnframes() == round(probe_duration(video) * REGNET.sample_rate)
    # the generated mel as a picture: 2 rows per band, a column per mel frame of the clip, not a flat colour
    picture = gateway.http.get(done["links"]["spectrogram"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    image = cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR)
    mel_frames = probe_duration(video) * REGNET.sample_rate / REGNET.hop_length
    assert image.shape[0] == 2 * REGNET.n_mels and abs(image.shape[1] - mel_frames) <= 2, image.shape
    assert image.std() > 5
    (gateway.data_dir / "jobs" / job["id"] / "spectrogram.png").unlink()  # as a job finished by an older gateway
    missing = gateway.http.get(done["links"]["spectrogram"])
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert gateway.http.get(done["links"]["audio"]).status_code == 200


def test_progress_stream_ends_with_the_result(gateway):
    job = gateway.upload(make_video(duration_s=1.5, fps=20.0, seed=4)).json()
    events = []
    with gateway.http.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=180) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["status"] == "done"
    assert [e["windows_done"] for e in events] == sorted(e["windows_done"] for e in events)


@pytest.mark.parametrize(
    ("data", "kind", "status", "code"),
    [
        (b"", "video/mp4", 400, "empty_upload"),
        (b"hello", "text/plain", 415, "unsupported_type"),
        (np.zeros(3 * 1024 * 1024, dtype=np.uint8).tobytes(), "video/mp4", 413, "too_large"),
    ],
    ids=["empty", "not-a-video-type", "too-large"],
)
def test_bad_uploads_get_clear_json_errors(gateway, data, kind, status, code):
    response = gateway.upload(data, kind=kind)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


def _send_and_read_status(port: int, request: bytes) -> tuple[int, dict]:
    """Send ``request`` (headers, perhaps the start of a body) on a raw socket; the response's status and JSON."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body[body.index(b"{") :])


def test_uploads_are_refused_as_soon_as_the_request_shows_it_breaks_a_limit(gateway):
    """No need to send (or hold) a whole body: a declared size over the limit is refused at the headers, a
    wrong content type at the file part's headers; nothing is left on disk."""
    boundary = "s2s-test-boundary"

    def head(length: int) -> bytes:
        return (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
                f"Authorization: Bearer {gateway.key}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode()  # fmt: skip

    status, body = _send_and_read_status(gateway.port, head(10 * 1024**3))  # 10 GB announced, none sent
    assert status == 413 and body["error"]["code"] == "too_large"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\nthe first bytes of a large file").encode()  # fmt: skip
    status, body = _send_and_read_status(gateway.port, head(1024 * 1024) + part)  # the rest never comes
    assert status == 415 and body["error"]["code"] == "unsupported_type"
    assert not list((gateway.data_dir / "uploads").iterdir()), "a refused upload left a file"
    assert gateway.http.get("/healthz").status_code == 200


def test_other_form_fields_are_bounded_too(gateway):
    """Bytes of fields beside the file are counted however they arrive, not kept, and bounded."""
    response = gateway.http.post(
        "/v1/jobs", data={"note": "x" * 200_000}, files={"file": ("a.mp4", b"\0" * 10, "video/mp4")}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"
    assert not list((gateway.data_dir / "uploads").iterdir())


def test_what_preprocess_rejects_is_422_with_its_message(gateway):
    garbage = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    job = gateway.upload(garbage).json()
    state = gateway.wait(job["id"])
    assert state["status"] == "failed" and state["error"]["code"] == "invalid_video"
    assert "cannot read the input as a video file" in state["error"]["message"]
    assert "StatusCode" not in state["error"]["message"] and "INVALID_ARG" not in state["error"]["message"]
    assert not (gateway.data_dir / "jobs" / job["id"] / "input").exists(), "an unusable input is not kept"
    assert gateway.http.get(f"/v1/jobs/{job['id']}/video").status_code == 409
    sync = gateway.http.post("/v1/generate", files={"file": ("x.mp4", garbage, "video/mp4")})
    assert sync.status_code == 422 and "cannot read the input" in sync.json()["error"]["message"]
    assert gateway.http.get("/readyz").status_code == 200  # still healthy


def test_synchronous_generate_returns_the_mp4(gateway):
    video = make_video(duration_s=1.0, fps=20.0)
    response = gateway.http.post("/v1/generate", files={"file": ("a.webm", video, "video/webm")})
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}


def test_gif_and_flv_come_back_as_mp4_jobs_and_synchronously(gateway):
    for container, kind in (("gif", "image/gif"), ("flv", "video/x-flv")):
        video = make_video(duration_s=1.0, fps=20.0, container=container)
        job = gateway.upload(video, name=f"a.{container}", kind=kind).json()
        done = gateway.wait(job["id"])
        assert done["status"] == "done" and done["video_copied"] is False, done
        sync = gateway.http.post("/v1/generate", files={"file": (f"b.{container}", video, kind)})
        assert sync.status_code == 200, sync.text
        for data in (gateway.http.get(done["links"]["video"]).content, sync.content):
            with av.open(io.BytesIO(data)) as muxed:
                assert [s.type for s in muxed.streams] == ["video", "audio"]


def test_a_still_image_comes_back_as_a_video_with_sound(gateway):
    """A PNG job with the seconds asked for, a JPEG synchronously with the server's default (the small
    repository's 5 s limit); a bad duration is 400, a duration for a video fails the job with the reason."""
    still = make_still(".png", seed=5)
    job = gateway.http.post("/v1/jobs", params={"duration": 2.0}, files={"file": ("photo.png", still, "image/png")})
    assert job.status_code == 202, job.text
    done = gateway.wait(job.json()["id"])
    assert done["status"] == "done" and done["still_duration_s"] == 2.0, done
    assert done["windows_total"] == small_windows(2.0)
    sync = gateway.http.post("/v1/generate", files={"file": ("photo.jpg", make_still(".jpg"), "image/jpeg")})
    assert sync.status_code == 200, sync.text
    for data, seconds in ((gateway.http.get(done["links"]["video"]).content, 2.0), (sync.content, 5.0)):
        with av.open(io.BytesIO(data)) as muxed:
            assert [s.type for s in muxed.streams] == ["video", "audio"]
            audio, video = muxed.streams.audio[0], muxed.streams.video[0]
            assert abs(float(audio.duration * audio.time_base) - seconds) < 0.1
            assert abs(max(f.time for f in muxed.decode(video)) - seconds) < 0.1
    refused = gateway.http.post("/v1/jobs", params={"duration": 0}, files={"file": ("p.png", still, "image/png")})
    assert refused.status_code == 400 and "duration" in refused.json()["error"]["message"]
    video = gateway.http.post("/v1/jobs", params={"duration": 3}, files={"file": ("a.mp4", make_video(duration_s=1.0),
                                                                                     "video/mp4")})  # fmt: skip
    failed = gateway.wait(video.json()["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_video"
    assert "still images only" in failed["error"]["message"]
    assert gateway.http.get("/readyz").status_code == 200


def test_unknown_ids_and_paths_are_404(gateway):
    for job_id in ("AAAAAAAAAAAAAAAAAAAAAA", "..%2F..%2Fetc%2Fpasswd", "x" * 100):
        response = gateway.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 404 and response.json()["error"]["code"] in ("not_found", "http_error")


def test_delete_removes_the_job(gateway):
    job = gateway.upload(make_video(duration_s=0.5, fps=20.0)).json()
    gateway.wait(job["id"])
    assert gateway.http.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert gateway.http.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_metrics_change_after_requests(gateway):
    before = gateway.http.get("/metrics").text
    job = gateway.upload(make_video(duration_s=0.5, fps=20.0)).json()
    gateway.wait(job["id"])
    gateway.http.get(f"/v1/jobs/{job['id']}/video")
    after = gateway.http.get("/metrics").text
    assert (
        metric(after, "s2s_gateway_requests_total", route="/v1/jobs", status="202")
        == metric(before, "s2s_gateway_requests_total", route="/v1/jobs", status="202") + 1
    )
    assert metric(after, "s2s_gateway_bytes_received_total") > metric(before, "s2s_gateway_bytes_received_total")
    assert metric(after, "s2s_gateway_bytes_sent_total") > metric(before, "s2s_gateway_bytes_sent_total")
    assert metric(after, "s2s_gateway_jobs_total", outcome="done") >= 1
    assert "s2s_gateway_job_duration_seconds_bucket" in after and "s2s_gateway_queue_depth" in after


def test_openapi_docs_describe_the_service(gateway):
    """The docs page loads Swagger UI from the gateway itself: it works on a cluster without internet."""
    page = gateway.http.get("/docs")
    assert page.status_code == 200 and "https://" not in page.text and "http://" not in page.text
    for asset in re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', page.text) or ["missing"]:
        assert gateway.http.get(asset).status_code == 200, asset
    spec = gateway.http.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/video", "/v1/generate"} <= set(spec["paths"])
    assert "RegNet" in spec["info"]["description"]


def test_every_response_carries_the_security_headers(gateway):
    for path in ("/", "/healthz", "/v1/jobs/unknown-job-id-0000000", "/static/app.js", "/docs"):
        response = gateway.http.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY" and response.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'self'" in response.headers["content-security-policy"], path
    assert gateway.http.get("/readyz").json() == {"status": "ready"}, "no internal address"


def test_triton_down_is_503_with_retry_hint(tmp_path):
    (dead,) = free_ports(1)
    gw = Gateway(f"127.0.0.1:{dead}", tmp_path / "data")
    try:
        response = gw.upload(make_video(duration_s=0.3))
        assert response.status_code == 503 and response.headers["retry-after"]
        assert response.json()["error"]["retryable"] is True
        ready = gw.http.get("/readyz")
        assert ready.status_code == 503
        for text in (response.text, ready.text):  # the user learns nothing of the inside
            assert str(dead) not in text and "StatusCode" not in text
        assert gw.http.get("/healthz").status_code == 200  # liveness is its own
    finally:
        gw.stop()


def test_concurrency_limit_gives_429(triton, tmp_path):
    gw = Gateway(triton.grpc_url, tmp_path / "data", "--workers", "1", "--max-queued", "1", key_options="jobs=10")
    try:
        videos = [make_video(duration_s=3.0, fps=20.0, seed=i) for i in range(4)]
        responses = [gw.upload(v) for v in videos]  # one running + one waiting at most
        codes = [r.status_code for r in responses]
        assert codes[0] == 202 and 429 in codes, codes
        refused = responses[codes.index(429)]
        assert refused.headers["retry-after"] and refused.json()["error"]["code"] == "busy"
        for r in responses:
            if r.status_code == 202:
                assert gw.wait(r.json()["id"])["status"] == "done"  # what was accepted is not lost
    finally:
        gw.stop()


def upload_of(data: bytes) -> dict:
    return {"file": ("a.mp4", data, "video/mp4")}


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_abuse_keys_quotas_and_audit(triton, tmp_path):
    """Bounded, loopback only: no key or a wrong key -> 401; another key's job is invisible; a key over
    its job, rate or disk quota -> 429/413 with Retry-After; 20 rapid synchronous requests run at most
    ``--max-sync`` at a time, never 5xx, and what was refused never reached Triton; keys rotate without a
    restart; the audit log names key ids, never keys; Triton's restricted APIs refuse without their key."""
    import tritonclient.http as httpclient

    from tests.conftest import ADMIN_HEADERS

    gw = Gateway(triton.grpc_url, tmp_path / "data", "--max-sync", "2", "--key-rate", "3", key_options="jobs=1")
    anonymous = httpx.Client(base_url=gw.url, timeout=120)
    try:
        someone = "/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA"
        routes = [("POST", "/v1/jobs"), ("POST", "/v1/generate"), ("GET", "/v1/me"), ("GET", "/metrics"),
                  ("GET", someone), ("GET", f"{someone}/video"), ("DELETE", someone)]  # fmt: skip
        for headers in ({}, bearer("s2s_wrong-key"), {"X-API-Key": "s2s_wrong-key"}):
            for method, path in routes:
                response = anonymous.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.json()["error"]["code"] == "unauthorized"
                assert response.headers["www-authenticate"] == "Bearer"
        for path in ("/healthz", "/readyz", "/", "/docs", "/openapi.json", "/static/app.js"):
            assert anonymous.get(path).status_code == 200, path
        me = anonymous.get("/v1/me", headers={"X-API-Key": gw.key}).json()
        assert me["key"] == "tester" and me["quota"]["jobs"] == 1 and me["quota"]["jobs_per_minute"] == 3

        other, small, burst = gw.add_key("other"), gw.add_key("small", "disk=1K"), gw.add_key("burst", "jobs=20")
        time.sleep(2.5)  # the gateway checks the keys file at most every 2 s
        video = make_video(duration_s=3.0, fps=20.0, seed=7)
        job = gw.upload(video).json()
        assert anonymous.get(f"/v1/jobs/{job['id']}", headers=bearer(other)).status_code == 404
        assert anonymous.delete(f"/v1/jobs/{job['id']}", headers=bearer(other)).status_code == 404
        # the key's one unfinished job is running: another job, or a synchronous request, is over its quota
        clip = make_video(duration_s=1.0, fps=20.0, seed=8)
        for response in (gw.upload(clip), gw.http.post("/v1/generate", files=upload_of(clip))):
            assert response.status_code == 429 and response.json()["error"]["code"] == "quota_jobs", response.text
            assert int(response.headers["retry-after"]) > 0
        assert gw.wait(job["id"])["status"] == "done"
        # rate: 3 new jobs a minute (refused uploads count: they cost the gateway work too)
        codes = [anonymous.post("/v1/jobs", headers=bearer(other), files={"file": ("n.txt", b"x", "text/plain")})
                 for _ in range(4)]  # fmt: skip
        assert [c.status_code for c in codes] == [415, 415, 415, 429], [c.text for c in codes]
        assert codes[-1].json()["error"]["code"] == "rate_limited" and int(codes[-1].headers["retry-after"]) >= 1
        # disk: one upload larger than the key's whole quota
        too_big = anonymous.post("/v1/jobs", headers=bearer(small), files=upload_of(b"\0" * 4096))
        assert too_big.status_code == 413 and "disk quota" in too_big.json()["error"]["message"]

        # 20 synchronous requests at once from one key: at most 2 run, the rest get 429, none 5xx
        stats = httpclient.InferenceServerClient(triton.http_url)
        served_before = stats.get_inference_statistics("s2s", headers=ADMIN_HEADERS)["model_stats"][0]
        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(
                lambda _: anonymous.post("/v1/generate", headers=bearer(burst), files=upload_of(clip)),
                range(20),
            ))  # fmt: skip
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {200, 429} and codes.count(200) >= 1 and codes.count(429) >= 1, codes
        served_after = stats.get_inference_statistics("s2s", headers=ADMIN_HEADERS)["model_stats"][0]
        windows = small_windows(1.0)  # a synchronous request sends the clip's windows
        assert served_after["inference_count"] - served_before["inference_count"] == codes.count(200) * windows
        runs = [(line["time"] - line["seconds"], line["time"]) for line in gw.audit()
                if line["event"] == "generate" and line["key"] == "burst"]  # fmt: skip
        assert len(runs) == codes.count(200) and _most_at_once(runs) <= 2, runs
        assert gw.http.get("/readyz").status_code == 200 and triton.ready()

        # rotation without a restart: a keys file that does not parse keeps the keys; a removed line revokes
        good = gw.keys_file.read_text()
        gw.keys_file.write_text(good + "broken-line-without-hash\n")
        time.sleep(2.5)
        assert anonymous.get("/v1/me", headers=bearer(other)).status_code == 200
        gw.keys_file.write_text("\n".join(line for line in good.splitlines() if not line.startswith("other ")) + "\n")
        time.sleep(2.5)
        assert anonymous.get("/v1/me", headers=bearer(other)).status_code == 401
        assert gw.http.get("/v1/me").status_code == 200

        audit = gw.audit()
        events = {(line["event"], line["key"]) for line in audit}
        assert {
            ("job.created", "tester"),
            ("job.finished", "tester"),
            ("auth.refused", ""),
            ("quota.refused", "tester"),
            ("quota.refused", "other"),
            ("quota.refused", "small"),
        } <= events
        text = gw.audit_log.read_text()
        assert all(key not in text for key in (gw.key, other, small, burst, "s2s_wrong-key"))
        # Triton's own admin surface refuses without its key
        assert httpx.post(f"http://{triton.http_url}/v2/repository/index", content=b"{}").status_code in (401, 403)
    finally:
        anonymous.close()
        gw.stop()


def test_the_gateway_refuses_to_start_without_keys_or_no_auth(tmp_path, caplog, monkeypatch):
    from s2s.cli import main

    monkeypatch.delenv("S2S_GATEWAY_API_KEYS", raising=False)
    assert main(["gateway", "--data-dir", str(tmp_path)]) == 1
    assert "s2s gateway failed: the gateway needs API keys" in caplog.text
    (tmp_path / "keys").write_text("alice sha256:nothex\n")
    assert main(["gateway", "--data-dir", str(tmp_path), "--api-keys", str(tmp_path / "keys")]) == 1
    assert "line 1" in caplog.text


def test_restart_keeps_finished_jobs_and_takes_up_unfinished_ones(triton, tmp_path):
    data = tmp_path / "data"
    gw = Gateway(triton.grpc_url, data)
    job = gw.upload(make_video(duration_s=0.8, fps=20.0)).json()
    assert gw.wait(job["id"])["status"] == "done"
    gw.stop()
    # a job a crashed gateway left running
    stale = data / "jobs" / "BBBBBBBBBBBBBBBBBBBBBB"
    stale.mkdir()
    (stale / "input").write_bytes(b"x")
    (stale / "job.json").write_text(
        json.dumps({"id": stale.name, "owner": "tester", "status": "running", "windows_done": 1})
    )
    again = Gateway(triton.grpc_url, data)
    try:
        assert again.http.get(f"/v1/jobs/{job['id']}").json()["status"] == "done"
        assert again.http.get(f"/v1/jobs/{job['id']}/video").status_code == 200
        # taken up again (its "video" is not one, which preprocess says, as for a new upload)
        taken = again.wait(stale.name)
        assert taken["status"] == "failed" and taken["error"]["code"] == "invalid_video", taken
        assert json.loads((stale / "job.json").read_text())["takeovers"] == 1
    finally:
        again.stop()


def test_page_in_headless_chromium(gateway, tmp_path):
    """Choose a file on the page, watch both progress bars finish, check the player and the download links."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "Debian's chromium and chromium-driver are needed (make setup installs them)"
    video = tmp_path / "silent.mp4"
    make_video(video, duration_s=1.5, fps=20.0)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,1100"):  # fmt: skip
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(gateway.url + "/")
        assert "Silence to sound" in browser.title or "s2s" in browser.title
        wait = WebDriverWait(browser, 180)
        # no key yet: the page asks for one; a wrong one is refused in words
        wait.until(ec.visibility_of_element_located((By.ID, "auth")))
        assert not browser.find_element(By.ID, "pick").is_displayed()
        browser.find_element(By.ID, "key").send_keys("s2s_not-a-key")
        browser.find_element(By.ID, "key-save").click()
        wait.until(ec.visibility_of_element_located((By.ID, "error")))
        assert "refused" in browser.find_element(By.ID, "error").text
        browser.find_element(By.ID, "key").send_keys(gateway.key)
        browser.find_element(By.ID, "key-save").click()
        wait.until(ec.visibility_of_element_located((By.ID, "pick")))
        assert "tester" in browser.find_element(By.ID, "whoami").text
        browser.find_element(By.ID, "file").send_keys(str(video))
        browser.find_element(By.ID, "start").click()
        wait.until(ec.visibility_of_element_located((By.ID, "result")))
        assert browser.find_element(By.ID, "upload").get_attribute("value") == "1"
        assert float(browser.find_element(By.ID, "process").get_attribute("value")) == 1.0
        # the results come as blobs fetched with the key: the player plays the video, the link holds the WAV
        wait.until(lambda b: b.execute_script("return document.getElementById('player').readyState") >= 1)
        duration = browser.execute_script("return document.getElementById('player').duration")
        assert abs(duration - probe_duration(video.read_bytes())) < 0.2, duration
        audio_link = browser.find_element(By.ID, "download-audio").get_attribute("href")
        assert audio_link.startswith("blob:")
        fetched = browser.execute_script(
            "return performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/audio'))"
            ".map((e) => [e.responseStatus, e.decodedBodySize]);"
        )  # the page fetched the WAV with its key (a 16-bit WAV of the clip, header included)
        wav_bytes = 44 + 2 * round(probe_duration(video.read_bytes()) * REGNET.sample_rate)
        assert fetched == [[200, wav_bytes]], fetched
        # under the player, the generated sound's spectrogram, fetched with the key and drawn
        wait.until(lambda b: b.find_element(By.ID, "spectrogram").is_displayed())
        size = browser.execute_script(
            "const i = document.getElementById('spectrogram');"
            "return [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().height];"
        )
        mel_frames = probe_duration(video.read_bytes()) * REGNET.sample_rate / REGNET.hop_length
        assert size[0] and abs(size[1] - mel_frames) <= 2 and size[2] == 2 * REGNET.n_mels and size[3] > 100, size
        assert browser.find_element(By.ID, "spectrogram").get_attribute("src").startswith("blob:")
        assert not browser.find_element(By.ID, "error").is_displayed()
        ARTIFACTS.mkdir(exist_ok=True)
        browser.execute_script("document.getElementById('spectrogram').scrollIntoView({block: 'end'})")
        assert browser.save_screenshot(str(ARTIFACTS / "gateway-page.png"))
    finally:
        browser.quit()
