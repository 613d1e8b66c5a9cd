"""How every benchmark measures and records: timed runs, the machine, reports.

Timing is a warm-up call, then ``repeats`` timed calls (medians are what reports quote, so a noisy
machine still gives a fair ratio measured side by side in one run). Reports are a JSON file with
everything and a Markdown table, written side by side.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s2s import __version__


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``, in Prometheus text format (what
    Triton's and the gateway's /metrics serve), read with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        # the parser names the samples of a counter declared without "_total" (Triton's) "<name>_total"
        names = {name, f"{name}_total"} if family.type == "counter" and family.name == name else {name}
        total += sum(s.value for s in family.samples if s.name in names and labels.items() <= s.labels.items())
    return total


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Call ``fn`` once to warm up (allocations, graph optimisation, kernel caches, a CUDA context),
    then ``repeats`` times; returns the wall times of those and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def gpu_names() -> list[str]:
    """name, memory and driver of each NVIDIA GPU (nvidia-smi), or ["none"]."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ["none"]
    gpus = [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
    return gpus or ["none"]


def machine() -> dict:
    """What a result was measured on: CPU, cores, GPUs, OS and the versions that matter."""
    import numpy
    import onnxruntime

    return {
        "cpu": cpu_name(), "cores": os.cpu_count(), "gpus": gpu_names(), "os": platform.platform(),
        "python": platform.python_version(), "s2s": __version__, "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
    }  # fmt: skip


def write_report(output: Path, json_name: str, md_name: str, result: dict, table: str) -> None:
    """A benchmark's results as JSON and its Markdown table under ``output``; the table is also printed."""
    output.mkdir(parents=True, exist_ok=True)
    (output / json_name).write_text(json.dumps(result, indent=2) + "\n")
    (output / md_name).write_text(table)
    print(table)  # noqa: T201 (a report is this command's output)


def openvino_version() -> str | None:
    """The OpenVINO runtime's version (what the openvino accelerator runs on), or None without it."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__.split("-")[0]
