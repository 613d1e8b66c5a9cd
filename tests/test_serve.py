"""`s2s serve`: the real embedded tritonserver, ONNX models under backend "onnxruntime", real clients."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from s2s.runtime.selfcheck import write_affine_model, write_affine_onnx
from tests.conftest import ADMIN_GRPC_HEADERS, ADMIN_HEADERS, Serve, leftovers, wait_until_gone


def write_add_vector_model(repository: Path, name: str = "add_vector", width: int = 4) -> Path:
    """y = x + [0, 1, ..., width-1] with a *dynamic* width axis: other widths fail inside ONNX Runtime."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "width"])
    vec = helper.make_tensor("vec", TensorProto.FLOAT, [width], list(range(width)))
    graph = helper.make_graph([helper.make_node("Add", ["x", "vec"], ["y"])], name, [x], [y], [vec])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (repository / name / "1").mkdir(parents=True)
    onnx.save(model, str(repository / name / "1" / "model.onnx"))
    (repository / name / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
        "dynamic_batching { max_queue_delay_microseconds: 50000 }\n"
    )
    return repository / name


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    # batching model, two instances, a GPU-only accelerator the embedded backend must log and ignore
    model = write_affine_model(root, "affine", max_batch_size=16, delay_us=100_000, instances=2)
    config = (model / "config.pbtxt").read_text()
    config += (
        'optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt" '
        'parameters { key: "precision_mode" value: "FP16" } } ] } }\n'
        'parameters { key: "intra_op_thread_count" value: { string_value: "1" } }\n'
    )
    (model / "config.pbtxt").write_text(config)
    # no batching, a non-default file name
    write_affine_onnx(root / "renamed" / "1" / "weights.onnx", width=3, scale=-1.0, offset=0.5)
    (root / "renamed" / "config.pbtxt").write_text(
        'name: "renamed"\nbackend: "onnxruntime"\nmax_batch_size: 0\ndefault_model_filename: "weights.onnx"\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]\n'
    )
    write_add_vector_model(root)
    return root


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    serve = Serve(repo, tmp_path_factory.mktemp("serve")).start().wait_ready()
    yield serve
    serve.stop()


def test_http_and_grpc_inference(server):
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    with httpclient.InferenceServerClient(server.http_url) as http:
        inp = httpclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_allclose(http.infer("affine", [inp]).as_numpy("y"), 2 * x + 1, rtol=1e-6)
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
        inp = grpcclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_allclose(grpc.infer("affine", [inp]).as_numpy("y"), 2 * x + 1, rtol=1e-6)
        meta = grpc.get_model_metadata("affine", as_json=True)
        assert meta["platform"] == "onnxruntime_onnx"
        assert [i["name"] for i in meta["inputs"]] == ["x"] and meta["inputs"][0]["datatype"] == "FP32"


def test_default_model_filename_and_no_batching(server):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
        inp = grpcclient.InferInput("x", [2, 3], "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_allclose(grpc.infer("renamed", [inp]).as_numpy("y"), -x + 0.5)


def test_dynamic_batching_batches_concurrent_requests(server):
    n = 16
    results: queue.Queue = queue.Queue()
    x = np.ones((1, 4), dtype=np.float32)
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
        before = grpc.get_inference_statistics("affine", as_json=True, headers=ADMIN_GRPC_HEADERS)["model_stats"][0]
        for _ in range(n):
            inp = grpcclient.InferInput("x", [1, 4], "FP32")
            inp.set_data_from_numpy(x)
            grpc.async_infer("affine", [inp], callback=lambda result, error: results.put((result, error)))
        outputs = [results.get(timeout=60) for _ in range(n)]
        after = grpc.get_inference_statistics("affine", as_json=True, headers=ADMIN_GRPC_HEADERS)["model_stats"][0]
    for result, error in outputs:
        assert error is None, error
        np.testing.assert_allclose(result.as_numpy("y"), 3 * x)
    inferences = int(after["inference_count"]) - int(before.get("inference_count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert inferences == n
    assert executions < inferences, f"{inferences} inferences took {executions} executions: nothing was batched"


def test_instance_count_starts_one_stub_per_instance(server):
    with httpclient.InferenceServerClient(server.http_url) as http:
        groups = http.get_model_config("affine", headers=ADMIN_HEADERS)["instance_group"]
    assert sum(g["count"] for g in groups) == 2
    assert all(g["kind"] == "KIND_CPU" for g in groups), "KIND_AUTO must resolve to CPU on a GPU-less machine"
    stubs = [p for p in leftovers(pgid=server.server_pid) if "triton_python_backend_stub" in p[2]]
    affine_stubs = [p for p in stubs if "/affine/" in p[2]]
    assert len(affine_stubs) == 2, stubs


def test_gpu_only_accelerator_is_logged_and_ignored(server):
    log = server.stderr()
    assert "execution accelerators ['tensorrt'] ignored" in log


def test_bad_request_gets_its_own_error_and_others_are_served(server):
    """Width 3 fails inside ONNX Runtime; width-4 requests queued with it still succeed."""
    results: queue.Queue = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
        for i in range(6):
            width = 3 if i % 3 == 0 else 4
            inp = grpcclient.InferInput("x", [1, width], "FP32")
            inp.set_data_from_numpy(np.zeros((1, width), dtype=np.float32))
            grpc.async_infer(
                "add_vector", [inp], callback=lambda result, error, w=width: results.put((w, result, error))
            )
        outcomes = [results.get(timeout=60) for _ in range(6)]
        assert grpc.is_server_ready()
    for width, result, error in outcomes:
        if width == 3:
            assert error is not None and "add_vector: inference failed" in str(error)
        else:
            assert error is None, error
            np.testing.assert_allclose(result.as_numpy("y"), [[0, 1, 2, 3]])


def test_wrong_dtype_and_shape_are_rejected_by_triton(server):
    with httpclient.InferenceServerClient(server.http_url) as http:
        bad_dtype = httpclient.InferInput("x", [1, 4], "FP64")
        bad_dtype.set_data_from_numpy(np.zeros((1, 4), dtype=np.float64))
        with pytest.raises(InferenceServerException, match=r"(?i)data.?type|FP64"):
            http.infer("affine", [bad_dtype])
        bad_shape = httpclient.InferInput("x", [1, 5], "FP32")
        bad_shape.set_data_from_numpy(np.zeros((1, 5), dtype=np.float32))
        with pytest.raises(InferenceServerException, match=r"(?i)shape"):
            http.infer("affine", [bad_shape])
        assert http.is_server_ready()


# ------------------------------------------------------------------------------------ failing models
def _bad_repo(tmp_path: Path, kind: str) -> Path:
    repo = tmp_path / f"repo-{kind}"
    model = write_affine_model(repo, "broken")
    config = model / "config.pbtxt"
    if kind == "missing-file":
        (model / "1" / "model.onnx").unlink()
    elif kind == "syntax":
        config.write_text(config.read_text().replace("max_batch_size:", "max_batch_size"))
    elif kind == "unsupported":
        text = re.sub(r"dynamic_batching \{[^}]*\}", "sequence_batching { }", config.read_text())
        config.write_text(text)
    elif kind == "dtype-mismatch":
        config.write_text(
            config.read_text().replace("TYPE_FP32 dims: [ 4 ] } ]\noutput", "TYPE_INT32 dims: [ 4 ] } ]\noutput")
        )
    return repo


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing-file", "ONNX model file not found"),
        ("syntax", "config.pbtxt"),
        ("unsupported", "does not support: sequence_batching"),
        ("dtype-mismatch", "input 'x': config dtype int32 but graph has float32"),
    ],
)
def test_broken_model_fails_serve_with_clear_message(tmp_path, serve_factory, kind, message):
    serve = serve_factory(_bad_repo(tmp_path, kind))
    code = serve.wait_exit(timeout_s=120)
    assert code != 0
    stderr = serve.stderr()
    assert "tritonserver exited with code" in stderr
    assert message in stderr, stderr[-3000:]
    assert not wait_until_gone(mentioning=str(tmp_path)), "processes left behind"


def test_missing_repository_is_an_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "s2s", "serve", "--model-repository", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "model repository not found" in result.stderr


# ------------------------------------------------------------------------------------------ shutdown
def shm_regions() -> set[str]:
    from s2s.runtime.server import SHM_DIR

    return {p.name for p in SHM_DIR.glob("triton_*_backend_shm_region_*")}


def mapped_regions(pgid: int) -> set[str]:
    """The Triton shared-memory regions the processes of group ``pgid`` have mapped: this server's own, not those of
    another server on the machine."""
    names = set()
    for pid, _, _ in leftovers(pgid=pgid):
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:  # gone meanwhile
            continue
        names |= set(re.findall(r"/dev/shm/(triton_\w+_backend_shm_region_\S+)", maps))
    return names


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_server_and_stubs(tmp_path, serve_factory, signum):
    """Nothing outlives the server: no process, and no shared-memory region - neither its own nor the
    ones a killed server left earlier (removed at start)."""
    import uuid

    from s2s.runtime.server import SHM_DIR

    orphan = SHM_DIR / f"triton_python_backend_shm_region_{uuid.uuid4()}"  # as a killed server leaves them
    orphan.write_bytes(b"\0" * 4096)
    os.utime(orphan, (time.time() - 3600, time.time() - 3600))
    write_affine_model(tmp_path / "repo", instances=2)
    serve = serve_factory(tmp_path / "repo").wait_ready()
    assert not orphan.exists(), "an unmapped region of a dead server is removed at start"
    pgid = serve.server_pid
    assert len([p for p in leftovers(pgid=pgid) if "triton_python_backend_stub" in p[2]]) == 2
    own = mapped_regions(pgid)  # its own only: another server on this machine may make and remove regions meanwhile
    assert own and own <= shm_regions(), "the stubs share memory with the server"
    assert serve.stop(signum) == 0
    assert not serve.ready()
    assert not wait_until_gone(pgid=pgid), "server or stub processes left behind"
    assert not leftovers(mentioning=str(tmp_path))
    assert not own & shm_regions(), "shared-memory regions left in /dev/shm"


def test_killed_launcher_takes_the_server_with_it(tmp_path, serve_factory):
    write_affine_model(tmp_path / "repo")
    serve = serve_factory(tmp_path / "repo").wait_ready()
    pgid = serve.server_pid
    serve.proc.kill()  # SIGKILL: no handler runs in the launcher
    serve.proc.wait()
    assert not wait_until_gone(pgid=pgid, timeout_s=30), "server outlived its launcher"
    deadline = time.monotonic() + 10
    while serve.ready() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not serve.ready()


def test_a_server_that_dies_unasked_is_started_again(tmp_path, serve_factory):
    """`s2s serve` starts a crashed server again (bounded by --restarts), as Kubernetes restarts a pod."""
    write_affine_model(tmp_path / "repo")
    serve = serve_factory(tmp_path / "repo", "--restarts", "1").wait_ready()
    first = serve.server_pid
    os.killpg(first, signal.SIGKILL)  # the server and its stubs, not the launcher
    deadline = time.monotonic() + 120
    while "started again after it died" not in serve.stdout():
        assert serve.proc.poll() is None and time.monotonic() < deadline, serve.stderr()[-2000:]
        time.sleep(0.2)
    assert serve.ready() and not wait_until_gone(pgid=first)
    second = int(re.findall(r"\(pid (\d+)\)", serve.stdout())[-1])
    os.killpg(second, signal.SIGKILL)  # one restart allowed: now it gives up and says so
    assert serve.wait_exit(timeout_s=60) != 0
    assert "giving up" in serve.stderr()
    assert not wait_until_gone(pgid=second)


def test_doctor_checks_the_stack_end_to_end():
    result = subprocess.run([sys.executable, "-m", "s2s", "doctor"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP inference     ok" in result.stdout
    assert "gRPC inference     ok" in result.stdout
    assert "(batched)" in result.stdout


def _http(url: str, path: str, body: bytes | None = None, headers: dict | None = None) -> int:
    """Status of one HTTP request to Triton (an error status is returned, not raised)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://{url}{path}", data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_admin_apis_refuse_requests_without_the_key_and_inference_still_works(tmp_path, serve_factory):
    """The upload-a-model.py attack on explicit model control, and every other admin API, without the key."""
    import base64
    import json

    root = tmp_path / "repo"
    write_affine_model(root)
    serve = serve_factory(root, "--model", "affine").wait_ready()  # explicit model control
    assert "header s2s-admin-key (the key you gave)" in serve.stdout()  # the test sets $S2S_TRITON_ADMIN_KEY
    marker = tmp_path / "pwned"
    evil = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nclass TritonPythonModel:\n    pass\n"
    upload = json.dumps({"parameters": {
        "config": json.dumps({"name": "evil", "backend": "python"}),
        "file:1/model.py": base64.b64encode(evil.encode()).decode(),
    }}).encode()  # fmt: skip
    refused = {
        "load a model from the request": ("/v2/repository/models/evil/load", upload),
        "repository index": ("/v2/repository/index", b"{}"),
        "model config": ("/v2/models/affine/config", None),
        "statistics": ("/v2/models/stats", None),
        "log settings": ("/v2/logging", b'{"log_verbose_level": 1}'),
        "trace settings": ("/v2/trace/setting", None),
        "shared memory": ("/v2/systemsharedmemory/status", None),
    }
    for what, (path, body) in refused.items():
        status = _http(serve.http_url, path, body)
        assert status in (401, 403), f"{what}: HTTP {status} without the admin key"
        assert _http(serve.http_url, path, body, {"s2s-admin-key": "not-the-key-0123456789"}) in (401, 403), what
    assert not marker.exists(), "the uploaded model.py ran"
    with grpcclient.InferenceServerClient(serve.grpc_url) as grpc:
        for call in (lambda: grpc.get_model_config("affine"), lambda: grpc.load_model("affine"),
                     lambda: grpc.get_inference_statistics("affine"), lambda: grpc.get_log_settings()):  # fmt: skip
            with pytest.raises(InferenceServerException):
                call()
        assert grpc.get_model_config("affine", headers=ADMIN_GRPC_HEADERS).config.name == "affine"
        assert grpc.is_server_ready() and grpc.is_model_ready("affine")  # health stays open
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        np.testing.assert_allclose(grpc.infer("affine", [x]).as_numpy("y"), 3.0)  # inference needs no key
    assert _http(serve.http_url, "/v2/repository/index", b"{}", ADMIN_HEADERS) == 200  # the key opens them
    assert _http(serve.http_url, "/v2/models/affine/config", None, ADMIN_HEADERS) == 200
    assert not marker.exists()


def test_serve_listens_on_loopback_unless_told_and_warns_beyond_it(tmp_path):
    from s2s.runtime.server import ServerOptions, TritonServer

    assert ServerOptions().address == "127.0.0.1"
    root = tmp_path / "repo"
    write_affine_model(root)
    options = ServerOptions.local(root, address="0.0.0.0", exit_timeout_s=5)
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("s2s.runtime.server").addHandler(handler)
    try:
        with TritonServer(options):
            pass
    finally:
        logging.getLogger("s2s.runtime.server").removeHandler(handler)
    text = " ".join(r.getMessage() for r in records)
    assert "for local use" in text and "CVE-2025-23319" in text and options.admin_key not in text


def test_sigint_drains_the_requests_in_flight_before_stopping(tmp_path, serve_factory):
    """Three whole videos in flight when `s2s serve` gets SIGINT: all three come back, new requests are
    refused meanwhile, the server then stops cleanly and leaves no shared memory."""
    from concurrent.futures import ThreadPoolExecutor

    from s2s.client.triton import ClientError, S2SClient
    from s2s.synth import make_video
    from tests.conftest import export_small_repository, small_windows

    export_small_repository(tmp_path / "repo")
    serve = serve_factory(tmp_path / "repo", "--exit-timeout", "120").wait_ready(timeout_s=300)  # the drain's bound
    pgid = serve.server_pid
    clips = [make_video(duration_s=4.5, fps=20.0, seed=40 + i) for i in range(3)]

    def one(clip: bytes):
        with S2SClient(serve.grpc_url) as client:
            return client.generate(clip)

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(one, clip) for clip in clips]
        time.sleep(1.5)  # all three are inside the server
        assert not any(f.done() for f in futures)
        ours = regions_mapped_by(pgid)  # (other servers on this machine have their own)
        assert ours, "the stubs share memory with the server"
        serve.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 20
        while _http(serve.http_url, "/v2/models/s2s/ready") == 200:  # the ensemble is being unloaded
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "draining" in serve.stdout() and not any(f.done() for f in futures)
        with pytest.raises(ClientError):  # a new request is refused while the others finish
            one(clips[0])
        results = [f.result(timeout=120) for f in futures]
    assert all(r.windows == small_windows(4.5) and r.waveform.size > 0 for r in results)
    assert serve.wait_exit(timeout_s=120) == 0
    assert not wait_until_gone(pgid=pgid)
    assert not ours & shm_regions(), "shared-memory regions left in /dev/shm"


def regions_mapped_by(pgid: int) -> set[str]:
    """Names of the Triton /dev/shm regions the processes of group ``pgid`` map."""
    from s2s.runtime.server import live_processes, mapped_shm

    names = mapped_shm(pid for pid, group, _ in live_processes() if group == pgid)
    return {name for name in names if name.startswith("triton_")}
