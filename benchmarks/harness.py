"""The benchmark harness behind ``s2s bench perf``: scenarios, the in-process reference, reports and plots.

Scenarios (each named, each reproducible from the flags recorded in ``results.json``):

    online   the ``s2s`` ensemble with a generated clip at fixed concurrencies (latency percentiles)
    offline  the ensemble at high concurrency (maximum throughput)
    rate     the ensemble at fixed request rates (latency under a given load: the SLO view)
    models   every composing model alone, with one window's realistic tensors

The harness starts the embedded Triton on a temporary repository whose network folders link to the
exported ones, with the instance counts and flow method asked for (so it can answer "how many
preprocess instances?"), or measures a server that is already running (``--url``). In the same
invocation the same clip goes through the in-process reference (same ONNX files, ONNX Runtime, no
Triton), so the report shows Triton's overhead and gains as ratios measured side by side.

Output, one folder per run: results.json (everything, with the machine), results.csv (one row per
measurement), report.md, and PNG plots.
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from s2s.bench.measure import machine
from s2s.bench.perf import Measurement, PerfError, PerfResult, PerfUnstableError, check_perf_analyzer, profile
from s2s.constants import REGNET
from s2s.errors import OptionError
from s2s.export.triton_config import read_preprocess_options, relink_repository
from s2s.flags import comma_list, flag
from s2s.flow import FLOW_METHODS
from s2s.repository import (
    ENSEMBLE,
    GENERATOR_INPUTS,
    INPUT_OF_TENSOR,
    MANIFEST,
    MODEL_NAMES,
    PREPROCESS,
    REGNET_INPUTS,
    generator_inputs,
    repository_field,
)
from s2s.runtime.server import ADMIN_APIS, ADMIN_KEY_ENV, admin_headers, read_admin_key
from s2s.windowing import PreprocessOptions

log = logging.getLogger(__name__)

SCENARIOS = ("online", "offline", "rate", "models")
PROTOCOLS = ("grpc", "http")
#: what perf_analyzer reads from a server besides inference, and cannot unlock over gRPC
PERF_ANALYZER_READS = ("model-config", "statistics")


@dataclass
class HarnessOptions:
    repository: Path = repository_field("exported model repository")
    output: Path = flag(Path("runs/bench"), "--output", "runs land in <output>/<UTC time>")
    scenarios: tuple[str, ...] = flag(
        ("online", "models"), "--scenarios", f"comma-separated, of {','.join(SCENARIOS)}", type=comma_list(str)
    )
    clip_seconds: float = flag(REGNET.window_s, "--clip-seconds", "generated clip length, seconds")
    concurrency: tuple[int, ...] = flag((1, 2), "--concurrency", "online concurrencies", type=comma_list(int))
    offline_concurrency: tuple[int, ...] = flag(
        (4,), "--offline-concurrency", "offline concurrencies", type=comma_list(int)
    )
    request_rates: tuple[float, ...] = flag(
        (), "--request-rates", "rate scenario, requests/s, e.g. 0.02,0.05", type=comma_list(float)
    )
    model_concurrency: tuple[int, ...] = flag(
        (1,), "--model-concurrency", "models scenario concurrencies", type=comma_list(int)
    )
    models: tuple[str, ...] = flag(
        (PREPROCESS, *MODEL_NAMES), "--models", "models scenario subset", type=comma_list(str)
    )
    #: None: measure a server the harness starts; else the gRPC and HTTP addresses of a running one
    url: str | None = flag(None, "--url", "gRPC address of a running server instead of starting one (e.g. host:8001)")
    http_url: str | None = flag(
        None, "--http-url", "its HTTP address, for statistics (default: the gRPC one, port 8000)"
    )
    flow_method: str = flag("dis", "--flow-method", "optical flow of the started server", choices=FLOW_METHODS)
    preprocess_instances: int = flag(2, "--preprocess-instances", "preprocess instances of the started server")
    instances: int = flag(1, "--instances", "instances per network of the started server")
    reference_runs: int = flag(2, "--reference-runs", "in-process runs of the same clip, 0 to skip")
    #: perf_analyzer 2.51 sends custom headers over HTTP only: over gRPC it needs the model configs and
    #: statistics of the server open (the harness's own server leaves those two open for it)
    protocol: str = flag(
        "grpc", "--protocol", "perf_analyzer's protocol; http also carries the admin key to a server that "
        "restricts model configs and statistics (as the Helm chart's Triton does)", choices=PROTOCOLS,
    )  # fmt: skip
    #: a running server's admin key (its statistics and configs are behind it); a started one has its own
    admin_key: str | None = flag(
        name="--admin-key-file", help="file holding the admin key of the server at --url (statistics, configs)",
        type=read_admin_key, default_factory=lambda: os.environ.get(ADMIN_KEY_ENV), shown=f"${ADMIN_KEY_ENV}",
        secret=True,
    )  # fmt: skip
    measurement: Measurement = field(default_factory=Measurement)


#: options never written to results (keys)
_SECRETS = {f.name for f in fields(HarnessOptions) if not f.repr}


# ------------------------------------------------------------------------------------ repository
def prepare_repository(options: HarnessOptions, target: Path) -> dict:
    """A repository for this run: the exported networks (linked) with the requested serving settings."""
    source = options.repository.resolve()
    exported = read_preprocess_options(source)
    preprocess = replace(exported, flow_method=options.flow_method, instances=options.preprocess_instances)
    relink_repository(source, target, preprocess, options.instances)
    manifest = json.loads((source / MANIFEST).read_text())
    return {
        "window_frames": preprocess.window_frames, "z_dim": preprocess.z_dim, "preprocess": preprocess,
        "manifest": manifest, "generator_inputs": generator_inputs(manifest),
    }  # fmt: skip


def model_shapes(
    name: str, window_frames: int, z_dim: int, clip_bytes: int, inputs: tuple[str, ...] = REGNET_INPUTS
) -> dict[str, list[int]]:
    """One window's tensors for each model (the batch dimension is perf_analyzer's -b 1); ``inputs``: what the
    generator is fed (s2s.repository.GENERATOR_INPUTS' names)."""
    size, t = REGNET.image_size, window_frames
    return {
        PREPROCESS: {"video": [clip_bytes]},
        "tsn_rgb": {"frames": [t, 3, size, size]},
        "tsn_flow": {"frames": [t, 2, size, size]},
        "generator": {GENERATOR_INPUTS[n][0]: [t, GENERATOR_INPUTS[n][1]] for n in inputs}
        | {"frame_index": [t], "z": [z_dim]},
        "vocoder": {"mel": [REGNET.n_mels, REGNET.mel_frames(t)]},
    }[name]


#: the generated clip every perf_analyzer run of the ensemble sends (what `clip` in results.json describes)
CLIP_SOURCE = "generated 640x360 30 fps H.264"


def write_input_data(folder: Path, clip_seconds: float) -> bytes:
    """perf_analyzer's input-data folder for the ensemble: one raw file per input, the optional ones too
    (perf_analyzer sends every input; window_start 0, window_count 0: the whole video; duration_s 0: a
    still's default, unused for a video). Returns the generated clip's bytes."""
    from s2s.synth import make_video

    clip = make_video(duration_s=clip_seconds, fps=30.0, width=640, height=360, seed=1)
    folder.mkdir(parents=True)
    (folder / "video").write_bytes(clip)
    for name in ("window_start", "window_count"):
        (folder / name).write_bytes(np.zeros(1, dtype=np.int32).tobytes())
    (folder / "duration_s").write_bytes(np.zeros(1, dtype=np.float32).tobytes())
    return clip


# ------------------------------------------------------------------------------------------- run
def run(options: HarnessOptions) -> Path:
    unknown = set(options.scenarios) - set(SCENARIOS)
    if unknown:
        raise OptionError(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    version = check_perf_analyzer()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = options.output / stamp
    try:
        return _run(options, version, out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written run folders
        raise


def _run(options: HarnessOptions, version: str, out: Path) -> Path:
    raw = out / "perf_analyzer"
    raw.mkdir(parents=True, exist_ok=True)
    clip = write_input_data(raw / "input", options.clip_seconds)
    results: list[PerfResult] = []
    with ExitStack() as stack:
        if options.url is None:
            grpc_url, http_url, info, headers = _start_server(options, stack)
        else:
            grpc_url, http_url = options.url, options.http_url or options.url.replace(":8001", ":8000")
            headers = admin_headers(options.admin_key) if options.admin_key else None
            info = _remote_info(http_url)
        _check_models(http_url, [ENSEMBLE] if set(options.scenarios) - {"models"} else list(options.models))
        if options.url is not None:
            info |= _served_preprocess(http_url, headers)
        ensemble_shape = {"video": [len(clip)]}
        video_data = raw / "input"

        def measure(scenario: str, model: str, **kwargs) -> None:
            log.info("perf_analyzer: %s %s %s", scenario, model, {k: v for k, v in kwargs.items() if k != "shapes"})
            url = grpc_url if options.protocol == "grpc" else http_url
            kw = dict(url=url, protocol=options.protocol, http_url=http_url, workdir=raw, headers=headers)
            m = options.measurement
            # fast models are noisy over few requests: on instability, measure longer, then accept a
            # relaxed threshold and say so in the report (never drop the measurement silently)
            attempts = [
                m,
                replace(m, request_count=m.request_count * 4),
                replace(m, request_count=m.request_count * 4, stability_percent=100.0),
            ]
            for attempt, measurement in enumerate(attempts):
                if attempt:
                    log.info("  unstable; measuring again: %d requests per window, stability %g%%",
                             measurement.request_count, measurement.stability_percent)  # fmt: skip
                try:
                    results.append(profile(model, **kw, **kwargs, measurement=measurement))
                    break
                except PerfUnstableError:
                    if attempt == len(attempts) - 1:
                        raise
            results[-1].scenario = scenario
            results[-1].stable = measurement.stability_percent == m.stability_percent
            log.info("  -> %.4g infer/s, p50 %.0f ms", results[-1].throughput, results[-1].p50_ms)

        for scenario in options.scenarios:
            if scenario == "online":
                for c in options.concurrency:
                    measure(scenario, ENSEMBLE, concurrency=c, shapes=ensemble_shape, input_data=video_data)
            elif scenario == "offline":
                for c in options.offline_concurrency:
                    measure(scenario, ENSEMBLE, concurrency=c, shapes=ensemble_shape, input_data=video_data)
            elif scenario == "rate":
                for r in options.request_rates:
                    measure(scenario, ENSEMBLE, request_rate=r, shapes=ensemble_shape, input_data=video_data)
            elif scenario == "models":
                for name in options.models:
                    shapes = model_shapes(name, info["window_frames"], info["z_dim"], len(clip),
                                          info["generator_inputs"])  # fmt: skip
                    # the generator's frame_index must index its features: zeros (timing does not depend on them)
                    data = video_data if name == PREPROCESS else "zero" if name == "generator" else "random"
                    for c in options.model_concurrency:
                        measure(scenario, name, concurrency=c, shapes=shapes, input_data=data)
    reference = _reference(options, clip, info)
    result = {
        "machine": machine(),
        "perf_analyzer": version,
        "server": info.get("server", {}),
        "options": _jsonable({k: v for k, v in asdict(options).items() if k not in _SECRETS}),
        "clip": {"seconds": options.clip_seconds, "bytes": len(clip), "source": CLIP_SOURCE},
        "window_frames": info["window_frames"],
        "weights": info.get("weights", "unknown"),
        "measurements": [r.as_dict() for r in results],
        "reference": reference,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    write_csv(out / "results.csv", result["measurements"])
    (out / "report.md").write_text(report(result))
    plots(result, out)
    log.info("results in %s", out)
    return out


def _start_server(options: HarnessOptions, stack: ExitStack) -> tuple[str, str, dict, dict[str, str]]:
    from s2s.runtime.server import ServerOptions, TritonServer

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s2s-bench-repo-")))
    info = prepare_repository(options, tmp)
    # over gRPC perf_analyzer 2.51 cannot send the key: this throw-away loopback server leaves what it
    # reads open; every other admin API stays behind the key
    open_apis = PERF_ANALYZER_READS if options.protocol == "grpc" else ()
    server_options = ServerOptions.local(
        tmp, shm_default_byte_size=64 * 1024 * 1024, log_level="error", exit_timeout_s=10,
        admin_apis=tuple(api for api in ADMIN_APIS if api not in open_apis),
    )  # fmt: skip
    stack.enter_context(TritonServer(server_options))
    info.update(_remote_info(server_options.http_url))
    models = info.pop("manifest")["models"]
    info["weights"] = "seeded random" if any(m.get("noise_weights") for m in models.values()) else "checkpoints"
    return server_options.grpc_url, server_options.http_url, info, server_options.admin_headers()


def _remote_info(http_url: str) -> dict:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    try:
        with httpclient.InferenceServerClient(http_url) as client:
            meta = client.get_server_metadata()
            return {"server": {"name": meta.get("name"), "version": meta.get("version")}}
    except (InferenceServerException, OSError, ConnectionError) as exc:
        raise PerfError(f"cannot reach Triton at {http_url}: {exc}") from None


def _served_preprocess(http_url: str, headers: dict[str, str] | None) -> dict:
    """Window length and noise width of the preprocess step a running server serves, and what its generator is
    fed (s2s.repository.GENERATOR_INPUTS' names, from its inputs; configs are an admin API: ``headers`` carry the
    key)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    try:
        with httpclient.InferenceServerClient(http_url) as client:
            served = PreprocessOptions.from_model_config(client.get_model_config(PREPROCESS, headers=headers))
            generator = client.get_model_config("generator", headers=headers)
    except (InferenceServerException, OptionError) as exc:
        hint = "" if headers else f" (give its admin key: --admin-key-file or ${ADMIN_KEY_ENV})"
        raise PerfError(f"cannot read the preprocess options served at {http_url}{hint}: {exc}") from None
    fed = tuple(INPUT_OF_TENSOR[t["name"]] for t in generator["input"] if t["name"] in INPUT_OF_TENSOR)
    return {"window_frames": served.window_frames, "z_dim": served.z_dim, "generator_inputs": fed}


def _check_models(http_url: str, names: list[str]) -> None:
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(http_url) as client:
        missing = [n for n in names if not client.is_model_ready(n)]
    if missing:
        raise PerfError(f"model(s) not ready on the server at {http_url}: {missing}")


def _reference(options: HarnessOptions, clip: bytes, info: dict) -> dict:
    """The same clip in-process: same preprocess code, same ONNX files in ONNX Runtime, no Triton."""
    if options.reference_runs <= 0 or options.url is not None:
        return {}
    from s2s.bench.reference import ReferencePipeline

    pipeline = ReferencePipeline.served(options.repository, info["preprocess"])  # what the server runs
    pipeline(clip)  # warm-up
    times = []
    for _ in range(options.reference_runs):
        start = time.perf_counter()
        pipeline(clip)
        times.append(time.perf_counter() - start)
    latency = statistics.median(times)
    return {"runs": times, "latency_ms": latency * 1000, "throughput": 1.0 / latency}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value


# ---------------------------------------------------------------------------------------- output
CSV_FIELDS = (
    "scenario", "model", "load", "level", "throughput", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms",
    "client_send_ms", "network_ms", "server_queue_ms", "server_compute_input_ms", "server_compute_infer_ms",
    "server_compute_output_ms", "client_recv_ms",
)  # fmt: skip


def write_csv(path: Path, measurements: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(measurements)


def report(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# s2s benchmark",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, GPU: {', '.join(m['gpus'])}; {m['os']}",
        f"- Triton {result['server'].get('version', '?')}, {result['perf_analyzer']}, onnxruntime {m['onnxruntime']}, "
        f"s2s {m['s2s']}; weights: {result['weights']}",
        f"- Clip: {result['clip']['seconds']:g} s, {result['clip']['source']}, {result['clip']['bytes']} bytes; "
        f"windows of {result['window_frames']} frames",
        f"- Options: {json.dumps({k: v for k, v in result['options'].items() if k != 'measurement'})}",
        "",
        "| scenario | model | load | throughput (infer/s) | p50 (ms) | p90 (ms) | p95 (ms) | p99 (ms) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["measurements"]:
        load = f"c={r['level']:g}" if r["load"] == "concurrency" else f"{r['level']:g} req/s"
        if not r.get("stable", True):
            load += " (unstable)"
        lines.append(
            f"| {r['scenario']} | {r['model']} | {load} | {r['throughput']:.4g} | {r['p50_ms']:.0f} | "
            f"{r['p90_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} |"
        )
    ensemble = [r for r in result["measurements"] if r["model"] == ENSEMBLE]
    if ensemble:
        lines += ["", "Server-side split per composing model (ensemble runs; ms per request):", ""]
        lines += ["| load | model | requests | avg batch | queue | compute input | compute infer | compute output |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in ensemble:
            for name, s in r["models"].items():
                if name == ENSEMBLE:
                    continue
                lines.append(
                    f"| c={r['level']:g} | {name} | {s['requests']:.0f} | {s['avg_batch']:.2f} | {s['queue_ms']:.1f} | "
                    f"{s['compute_input_ms']:.1f} | {s['compute_infer_ms']:.1f} | {s['compute_output_ms']:.1f} |"
                )
    ref = result.get("reference") or {}
    online = [r for r in ensemble if r["load"] == "concurrency"]
    if ref and online:
        c1 = min(online, key=lambda r: r["level"])
        best = max(online, key=lambda r: r["throughput"])
        lines += [
            "",
            "Against the in-process reference (same clip, same ONNX files, no Triton), measured in this run:",
            "",
            f"- in-process latency {ref['latency_ms']:.0f} ms (median of {len(ref['runs'])}); ensemble p50 at "
            f"c={c1['level']:g}: {c1['p50_ms']:.0f} ms -> Triton/in-process = {c1['p50_ms'] / ref['latency_ms']:.3f}",
            f"- in-process throughput {ref['throughput']:.4g} clips/s; best ensemble throughput "
            f"{best['throughput']:.4g} infer/s at c={best['level']:g} -> "
            f"gain x{best['throughput'] / ref['throughput']:.2f}",
        ]
    return "\n".join(lines) + "\n"


def plots(result: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ensemble = sorted(
        (r for r in result["measurements"] if r["model"] == ENSEMBLE and r["load"] == "concurrency"),
        key=lambda r: r["level"],
    )
    if ensemble:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["level"] for r in ensemble], [r["throughput"] for r in ensemble], "o-", label="ensemble")
        if result.get("reference"):
            ax.axhline(result["reference"]["throughput"], color="gray", ls="--", label="in-process reference")
        ax.set(xlabel="concurrency", ylabel="clips per second", title="s2s ensemble throughput")
        ax.set_ylim(bottom=0)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=120)
        plt.close(fig)
        written.append(out / "throughput.png")

        fig, ax = plt.subplots(figsize=(6, 4))
        for key in ("p50_ms", "p90_ms", "p95_ms", "p99_ms"):
            ax.plot([r["level"] for r in ensemble], [r[key] / 1000 for r in ensemble], "o-", label=key[:3])
        ax.set(xlabel="concurrency", ylabel="latency (s)", title="s2s ensemble latency percentiles")
        ax.set_ylim(bottom=0)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=120)
        plt.close(fig)
        written.append(out / "latency.png")

        split = ensemble[0]["models"]
        names = [n for n in split if n != ENSEMBLE]
        if names:
            fig, ax = plt.subplots(figsize=(7, 4))
            bottom = [0.0] * len(names)
            for key in ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms"):
                values = [split[n][key] / 1000 for n in names]
                ax.bar(names, values, bottom=bottom, label=key.removesuffix("_ms").replace("_", " "))
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
            ax.set(ylabel="seconds per request", title=f"stage breakdown, c={ensemble[0]['level']:g}")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out / "stages.png", dpi=120)
            plt.close(fig)
            written.append(out / "stages.png")
    return written
