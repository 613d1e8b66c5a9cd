"""Time each network on one 10 s window: PyTorch eager vs ONNX Runtime, on this machine's CPU.

One window = T = 215 frames for the TSN encoders and the generator, 860 mel frames for the vocoder.
Both runtimes get the same inputs and the same thread count; each is warmed up once, then timed
``repeats`` times; the table reports medians (and min/max) so a noisy machine still gives a fair
ratio measured side by side in one run. Not a test: run it with ``s2s bench networks``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from s2s.constants import REGNET
from s2s.export.layout import MODEL_NAMES
from s2s.export.onnx_export import export_onnx
from s2s.export.specs import ExportOptions, build_exports

log = logging.getLogger(__name__)


@dataclass
class Timing:
    model: str
    runtime: str
    median_s: float
    min_s: float
    max_s: float
    repeats: int


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up: allocations, ONNX Runtime graph optimisation, oneDNN primitive caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(models: tuple[str, ...] = MODEL_NAMES, repeats: int = 3, threads: int | None = None) -> dict:
    import onnxruntime as ort

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    timings: list[Timing] = []
    with tempfile.TemporaryDirectory(prefix="s2s-bench-") as tmp:
        for export in build_exports(ExportOptions(), models):
            frames = REGNET.mel_frames_per_window if export.name == "vocoder" else REGNET.frames_per_window
            inputs = export.examples(windows=1, frames=frames, seed=0)
            path = export_onnx(export, Path(tmp) / f"{export.name}.onnx")
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feeds = {t.name: x.numpy() for t, x in zip(export.inputs, inputs, strict=True)}

            def eager(export=export, inputs=inputs):
                with torch.inference_mode():
                    export.module(*inputs)

            for runtime, fn in (("pytorch", eager), ("onnxruntime", lambda s=session, f=feeds: s.run(None, f))):
                times = _time(fn, repeats)
                timings.append(Timing(export.name, runtime, statistics.median(times), min(times), max(times), repeats))
                log.info("%-10s %-12s median %.3f s", export.name, runtime, timings[-1].median_s)
    return {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "threads": threads,
            "python": platform.python_version(),
        },
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__},
        "window": {"frames": REGNET.frames_per_window, "mel_frames": REGNET.mel_frames_per_window},
        "timings": [asdict(t) for t in timings],
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    rows = {}
    for t in result["timings"]:
        rows.setdefault(t["model"], {})[t["runtime"]] = t
    lines = [
        f"Per 10 s window ({result['window']['frames']} frames / {result['window']['mel_frames']} mel frames), "
        f"{m['cpu']}, {m['threads']} threads, median of {result['timings'][0]['repeats']} runs "
        f"(torch {result['versions']['torch']}, onnxruntime {result['versions']['onnxruntime']}).",
        "",
        "| model | PyTorch eager (s) | ONNX Runtime (s) | ORT speed-up |",
        "|---|---:|---:|---:|",
    ]
    for model, r in rows.items():
        pt, ox = r["pytorch"]["median_s"], r["onnxruntime"]["median_s"]
        lines.append(f"| {model} | {pt:.3f} | {ox:.3f} | {pt / ox:.2f}x |")
    total_pt = sum(r["pytorch"]["median_s"] for r in rows.values())
    total_ox = sum(r["onnxruntime"]["median_s"] for r in rows.values())
    lines.append(f"| **all** | {total_pt:.3f} | {total_ox:.3f} | {total_pt / total_ox:.2f}x |")
    return "\n".join(lines) + "\n"


def write_report(output: Path, json_name: str, md_name: str, result: dict, table: str) -> None:
    """A benchmark's results as JSON and its Markdown table under ``output``; the table is also printed."""
    output.mkdir(parents=True, exist_ok=True)
    (output / json_name).write_text(json.dumps(result, indent=2) + "\n")
    (output / md_name).write_text(table)
    print(table)  # noqa: T201 (a report is this command's output)


def main(output: Path, models: tuple[str, ...], repeats: int, threads: int | None) -> int:
    result = run(models, repeats, threads)
    write_report(output, "networks.json", "networks.md", result, markdown(result))
    return 0
