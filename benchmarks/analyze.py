"""Triton Model Analyzer on the ``s2s`` ensemble (``s2s bench analyze``): a bounded search over the composing
models' instance counts and maximum batch sizes, on the embedded server, CPU only.

Model Analyzer (``triton-model-analyzer``, in the bench extra) starts the embedded ``tritonserver`` itself
(its *local* launch mode, with s2s's backend directory and environment, loopback only, GPU metrics off) once
per candidate configuration, on a repository of variants it writes (``models/``), and measures each with
perf_analyzer sending one generated clip per request at concurrencies up to ``--max-concurrency``. An
ensemble can only be searched in its *quick* mode: hill climbing over the composing models together, each
model's instance count from 1 to ``--max-instances`` and, for the networks, max_batch_size from
``--min-batch`` to ``--max-batch`` (doubling) with dynamic batching on. The networks never go below the
batch they were exported with: a request sends a clip's windows as one batch.

One folder per run, ``<output>/<UTC time>/``:

    config.yml          Model Analyzer's own configuration (`model-analyzer profile -f config.yml` runs the
                        same search again, and resumes from checkpoints/ after an interruption)
    model-analyzer.log  its output; tritonserver.log and perf_analyzer.log: the servers and clients it ran
    analyzer/           its reports: reports/summaries/s2s/result_summary.html, results/*.csv, plots
    results.json        every measured configuration with exact figures, read from its checkpoint (its CSV
                        rounds throughput to 0.1 inferences/s, which is all of s2s on a 2-core CPU)
    report.md           the configurations, the best against the committed defaults, in one table
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import logging
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from s2s.bench.harness import CLIP_SOURCE, write_input_data
from s2s.bench.measure import machine
from s2s.bench.perf import Measurement, PerfError, check_perf_analyzer, perf_analyzer_binary, perf_environment
from s2s.constants import REGNET
from s2s.errors import OptionError
from s2s.flags import flag
from s2s.repository import ENSEMBLE, MODEL_NAMES, POSTPROCESS, PREPROCESS, repository_field
from s2s.runtime.embedded import locate, prepare_backend_dir, server_environment
from s2s.runtime.server import SHM_BYTES, free_ports

log = logging.getLogger(__name__)

#: the ensemble's composing models, in its order: every one is searched, on the CPU
COMPOSING = (PREPROCESS, *MODEL_NAMES, POSTPROCESS)
#: Model Analyzer's name for the repository's configuration as committed
DEFAULT_VARIANT = f"{ENSEMBLE}_config_default"


class AnalyzerError(PerfError):
    """Model Analyzer is missing, failed, or measured nothing; the message says what to do."""


@dataclass
class AnalyzeOptions:
    repository: Path = repository_field("exported model repository")
    output: Path = flag(Path("runs/bench-analyze"), "--output", "runs land in <output>/<UTC time>")
    clip_seconds: float = flag(REGNET.window_s, "--clip-seconds", "generated clip length, seconds")
    max_instances: int = flag(2, "--max-instances", "instances per composing model, at most")
    min_batch: int = flag(
        8, "--min-batch", "smallest max_batch_size tried for the networks (a request sends a clip's windows as one "
        "batch: not below the exported 8)",
    )  # fmt: skip
    max_batch: int = flag(16, "--max-batch", "largest max_batch_size tried for the networks")
    max_concurrency: int = flag(2, "--max-concurrency", "clips in flight at most (1, 2, 4, ... up to this)")
    latency_budget_ms: float | None = flag(
        None, "--latency-budget-ms", "only configurations whose p99 latency stays within this count as best"
    )
    timeout_s: float = flag(7200.0, "--timeout", "seconds the whole search may take")
    measurement: Measurement = field(default_factory=Measurement)

    def check(self) -> None:
        if self.max_instances < 1 or self.max_concurrency < 1:
            raise OptionError("--max-instances and --max-concurrency start at 1")
        if not 1 <= self.min_batch <= self.max_batch:
            raise OptionError(f"--min-batch {self.min_batch} must be between 1 and --max-batch {self.max_batch}")
        if not (self.repository / ENSEMBLE / "config.pbtxt").is_file():
            raise OptionError(f"{self.repository} holds no `{ENSEMBLE}` ensemble: export a repository first")


def model_analyzer_binary() -> Path:
    """``model-analyzer`` next to this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "model-analyzer"
    found = beside if beside.is_file() else shutil.which("model-analyzer")
    if not found:
        raise AnalyzerError("Model Analyzer is not installed: pip install -e '.[bench]' (or `make setup`)")
    return Path(found)


def analyzer_config(options: AnalyzeOptions, folder: Path, clip_bytes: int, ports: list[int]) -> dict:
    """Model Analyzer's configuration for a run in ``folder`` (its input data already in ``folder/input``)."""
    triton = locate()
    environment = server_environment(triton, base=perf_environment())
    http, grpc, metrics = ports
    m = options.measurement
    config = {
        "model_repository": str(options.repository.resolve()),
        "profile_models": [ENSEMBLE],
        "cpu_only_composing_models": list(COMPOSING),
        "run_config_search_mode": "quick",
        "run_config_search_max_instance_count": options.max_instances,
        "run_config_search_min_model_batch_size": options.min_batch,
        "run_config_search_max_model_batch_size": options.max_batch,
        "run_config_search_max_concurrency": options.max_concurrency,
        "triton_launch_mode": "local",
        "triton_server_path": str(triton.binary),
        "triton_http_endpoint": f"127.0.0.1:{http}",
        "triton_grpc_endpoint": f"127.0.0.1:{grpc}",
        "triton_metrics_url": f"http://127.0.0.1:{metrics}/metrics",
        "triton_server_flags": {
            "backend-directory": str(folder / "backends"),
            "backend-config": f"python,shm-default-byte-size={SHM_BYTES}",
            "http-address": "127.0.0.1",
            "grpc-address": "127.0.0.1",
            "metrics-address": "127.0.0.1",
            "pinned-memory-pool-byte-size": 0,
            "allow-gpu-metrics": "false",
        },
        # the stubs run this interpreter's environment (s2s, onnxruntime, OpenVINO), as `s2s serve` sets it up
        "triton_server_environment": {k: environment[k] for k in ("PATH", "LD_LIBRARY_PATH", "PYTHONUNBUFFERED")},
        "triton_output_path": str(folder / "tritonserver.log"),
        "perf_analyzer_path": str(perf_analyzer_binary()),
        "perf_analyzer_flags": {
            "input-data": str(folder / "input"),
            "shape": [f"video:{clip_bytes}", "window_start:1", "window_count:1", "duration_s:1"],
            # each request is a whole clip, seconds long on a CPU: count requests, not time windows
            "measurement-mode": "count_windows",
            "measurement-request-count": m.request_count,
            "stability-percentage": m.stability_percent,
            "max-trials": m.max_trials,
        },
        # Model Analyzer's answer to an unstable measurement is 50 more requests per window: minutes per window
        # when a request is a clip; run perf_analyzer once per point instead (an unstable point is left out)
        "perf_analyzer_max_auto_adjusts": 1,
        "perf_analyzer_timeout": int(m.timeout_s),
        "perf_output": True,
        "perf_output_path": str(folder / "perf_analyzer.log"),
        "checkpoint_directory": str(folder / "checkpoints"),
        "output_model_repository_path": str(folder / "models"),
        "override_output_model_repository": True,
        "export_path": str(folder / "analyzer"),
    }
    if options.latency_budget_ms is not None:
        config["latency_budget"] = int(options.latency_budget_ms)
    return config


# ------------------------------------------------------------------------------------------- run
def run(options: AnalyzeOptions) -> Path:
    """The search, then results.json and report.md; returns the run's folder (kept when the search fails:
    Model Analyzer resumes from its checkpoint)."""
    options.check()
    binary, perf_version = model_analyzer_binary(), check_perf_analyzer()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = (options.output / stamp).resolve()
    clip = write_input_data(folder / "input", options.clip_seconds)
    prepare_backend_dir(folder / "backends")
    config = analyzer_config(options, folder, len(clip), free_ports(3))
    import yaml  # Model Analyzer's own dependency

    (folder / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    log.info("Model Analyzer: %s (log: %s)", folder / "config.yml", folder / "model-analyzer.log")
    with open(folder / "model-analyzer.log", "w") as out:
        search = subprocess.Popen(
            [str(binary), "profile", "-f", str(folder / "config.yml")], stdout=out, stderr=subprocess.STDOUT,
            env=perf_environment(), cwd=folder,
        )  # fmt: skip
        try:
            code = search.wait(timeout=options.timeout_s)
        except subprocess.TimeoutExpired:
            stop_search(search, folder)
            raise AnalyzerError(f"Model Analyzer ran past {options.timeout_s:g} s; {_resume(folder)}") from None
        except BaseException:  # interrupted: nothing it started outlives the command
            stop_search(search, folder)
            raise
    if code != 0:
        raise AnalyzerError(f"Model Analyzer failed (exit {code}):\n{_tail(folder)}\n{_resume(folder)}")
    prune(folder)
    rows = read_checkpoint(folder / "checkpoints")
    if not any(r["config"] == DEFAULT_VARIANT for r in rows):
        raise AnalyzerError(f"Model Analyzer did not measure the committed configuration:\n{_tail(folder)}")
    result = {
        "machine": machine(),
        "model_analyzer": importlib.metadata.version("triton-model-analyzer"),
        "perf_analyzer": perf_version.removeprefix("Perf Analyzer Version ").split()[0],
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "clip": {"seconds": options.clip_seconds, "bytes": len(clip), "source": CLIP_SOURCE},
        "measurements": rows,
    }
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "report.md").write_text(report(result))
    return folder


def stop_search(search: subprocess.Popen, folder: Path) -> None:
    """Stop Model Analyzer as Ctrl-C does (it saves its checkpoint and stops its server), then anything it
    started that still runs: its server, stubs and perf_analyzer run in sessions of their own, and every
    one of them names this run's folder on its command line."""
    import psutil  # Model Analyzer's own dependency

    search.send_signal(signal.SIGINT)
    try:
        search.wait(timeout=60)
    except subprocess.TimeoutExpired:
        search.kill()
        search.wait()
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(folder) in arg for arg in process.info["cmdline"] or ()):
                process.kill()


def prune(folder: Path) -> None:
    """After a finished search: drop the copies of the model files under models/ (hundreds of MB; each
    variant's config.pbtxt stays) and the backend directory."""
    for version in folder.glob("models/*/*"):
        if version.is_symlink():  # a variant's version folder links to its default's
            version.unlink()
        elif version.is_dir() and version.name.isdigit():
            shutil.rmtree(version)
    shutil.rmtree(folder / "backends", ignore_errors=True)


def _tail(folder: Path, lines: int = 15) -> str:
    """The last lines of Model Analyzer's log, without its warnings about GPU metrics a CPU has none of."""
    path = folder / "model-analyzer.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    kept = [line for line in text.splitlines() if "No GPU metric" not in line and "has no data" not in line]
    return "\n".join(kept[-lines:])


def _resume(folder: Path) -> str:
    return f"`model-analyzer profile -f {folder / 'config.yml'}` resumes from its checkpoint"


# ------------------------------------------------------------------------------------- results
def model_settings(model_config: dict) -> dict:
    """What the search varies, from a model config as Model Analyzer stores it (protobuf JSON names)."""
    groups = model_config.get("instanceGroup") or [{"count": 1}]
    return {
        "instances": sum(int(g.get("count", 1)) for g in groups),
        "max_batch_size": int(model_config.get("maxBatchSize", 0)),
        "dynamic_batching": "dynamicBatching" in model_config,
    }


def read_checkpoint(directory: Path) -> list[dict]:
    """Every measurement of the ensemble in Model Analyzer's latest checkpoint: configuration, the settings of
    each composing model, concurrency, throughput (clips/s) and latencies (ms), best first."""
    checkpoints = sorted(directory.glob("*.ckpt"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if not checkpoints:
        raise AnalyzerError(f"no Model Analyzer checkpoint in {directory}: nothing was measured")
    state = json.loads(checkpoints[-1].read_text())
    rows = []
    for variant, (run_config, measurements) in state["ResultManager.results"]["_results"].get(ENSEMBLE, {}).items():
        (ensemble,) = run_config["_model_run_configs"]
        models = {
            c["model_config"]["name"]: model_settings(c["model_config"]) | {"variant": c["variant_name"]}
            for c in ensemble["_composing_config_variants"]
        }
        for measured in measurements.values():
            (ours,) = measured["_model_config_measurements"]
            values = {name: value["_value"] for name, value in ours["_non_gpu_data"]}
            rows.append({
                "config": variant,
                "models": {name: models[name] for name in COMPOSING if name in models},
                # no concurrency flag (Model Analyzer's first look at the defaults): perf_analyzer's 1
                "concurrency": int(ours["_model_specific_pa_params"].get("concurrency-range") or 1),
                "first_look": not ours["_model_specific_pa_params"].get("concurrency-range"),
                "throughput": values["perf_throughput"],
                "avg_ms": values["perf_latency_avg"], "p99_ms": values["perf_latency_p99"],
                # perf_analyzer's server-side split of the ensemble: summed over its composing models
                "queue_ms": values.get("perf_server_queue", 0.0),
                "compute_ms": values.get("perf_server_compute_infer", 0.0),
            })  # fmt: skip
    return sorted(rows, key=lambda r: (-r["throughput"], r["p99_ms"]))


def best_per_config(rows: list[dict], latency_budget_ms: float | None = None) -> list[dict]:
    """Each configuration at its highest throughput (within the latency budget, where there is one), best
    first."""
    best: dict[str, dict] = {}
    for row in rows:  # already best first
        if latency_budget_ms is not None and row["p99_ms"] > latency_budget_ms:
            continue
        best.setdefault(row["config"], row)
    return list(best.values())


def _cell(settings: dict) -> str:
    batch = f", batch {settings['max_batch_size']}" if settings["max_batch_size"] else ""
    return f"{settings['instances']}{batch}"


def report(result: dict) -> str:
    options, rows = result["options"], result["measurements"]
    budget = options.get("latency_budget_ms")
    ranked = best_per_config(rows, budget)
    default = next((r for r in best_per_config(rows) if r["config"] == DEFAULT_VARIANT), None)
    m = result["machine"]
    lines = [
        f"# Model Analyzer on the `{ENSEMBLE}` ensemble",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {', '.join(m['gpus'])}; "
        f"Model Analyzer {result['model_analyzer']}, perf_analyzer {result['perf_analyzer']}, embedded Triton "
        f"(CPU only). One request = one {result['clip']['seconds']:g} s clip ({result['clip']['source']}). Quick "
        f"search: instances 1-{options['max_instances']} per composing model, network max_batch_size "
        f"{options['min_batch']}-{options['max_batch']} with dynamic batching, concurrency 1-"
        f"{options['max_concurrency']}" + (f", p99 within {budget:g} ms" if budget else "") + ".",
        "",
        "Each configuration at its best concurrency; cells: instances, max_batch_size (networks).",
        "",
        "| configuration | " + " | ".join(COMPOSING) + " | concurrency | clips/s | p99 (ms) | vs defaults |",
        "|---|" + "---|" * len(COMPOSING) + "---|---|---|---|",
    ]
    for row in ranked:
        name = f"{row['config']} (committed defaults)" if row["config"] == DEFAULT_VARIANT else row["config"]
        ratio = f"{row['throughput'] / default['throughput']:.2f}x" if default and default["throughput"] else "-"
        cells = " | ".join(_cell(row["models"][n]) if n in row["models"] else "-" for n in COMPOSING)
        lines.append(
            f"| {name} | {cells} | {row['concurrency']} | {row['throughput']:.4f} | {row['p99_ms']:.0f} | {ratio} |"
        )
    if ranked and default:
        top = ranked[0]
        if top["config"] == DEFAULT_VARIANT:
            verdict = "The committed defaults are the best configuration found."
        else:
            verdict = (
                f"Best: {top['config']}, {top['throughput']:.4f} clips/s "
                f"({top['throughput'] / default['throughput']:.2f}x the committed defaults' "
                f"{default['throughput']:.4f}), p99 {top['p99_ms']:.0f} ms vs {default['p99_ms']:.0f}. Its "
                "config.pbtxt files: " + ", ".join(f"models/{m['variant']}" for m in top["models"].values()) + "."
            )
        lines += ["", verdict]
    lines += [
        "", "Every measurement:", "",
        "| configuration | concurrency | clips/s | avg (ms) | p99 (ms) | server queue (ms) "
        "| server compute, all models (ms) |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in sorted(rows, key=lambda r: (r["config"], r["concurrency"])):
        lines.append(
            f"| {row['config']} | {row['concurrency']}{'*' if row['first_look'] else ''} | {row['throughput']:.4f} | "
            f"{row['avg_ms']:.0f} | "
            f"{row['p99_ms']:.0f} | {row['queue_ms']:.0f} | {row['compute_ms']:.0f} |"
        )
    if any(r["first_look"] for r in rows):
        lines += ["", "\\* Model Analyzer's first look at the committed defaults, before its search."]
    return "\n".join(lines) + "\n"
