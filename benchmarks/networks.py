"""Time each network on one 10 s window: PyTorch eager vs ONNX Runtime, on this machine's CPU.

One window = T = 215 frames for the TSN encoders and the generator, 860 mel frames for the vocoder.
Both runtimes get the same inputs and the same thread count; each is warmed up once, then timed
``repeats`` times; the table reports medians (and min/max) so a noisy machine still gives a fair
ratio measured side by side in one run. Not a test: run it with ``s2s bench networks``.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from s2s.bench.measure import machine, timed, write_report
from s2s.constants import REGNET
from s2s.export.onnx_export import export_onnx
from s2s.export.specs import ExportOptions, build_exports
from s2s.repository import MODEL_NAMES

log = logging.getLogger(__name__)


@dataclass
class Timing:
    model: str
    runtime: str
    median_s: float
    min_s: float
    max_s: float
    repeats: int


def run(models: tuple[str, ...] = MODEL_NAMES, repeats: int = 3, threads: int | None = None) -> dict:
    import onnxruntime as ort

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    timings: list[Timing] = []
    with tempfile.TemporaryDirectory(prefix="s2s-bench-") as tmp:
        for export in build_exports(ExportOptions(), models):
            inputs = export.examples(windows=1, frames=REGNET.frames_per_window, seed=0)
            path = export_onnx(export, Path(tmp) / f"{export.name}.onnx")
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feeds = {t.name: x.numpy() for t, x in zip(export.inputs, inputs, strict=True)}

            def eager(export=export, inputs=inputs):
                with torch.inference_mode():
                    export.module(*inputs)

            for runtime, fn in (("pytorch", eager), ("onnxruntime", lambda s=session, f=feeds: s.run(None, f))):
                times, _ = timed(fn, repeats)
                timings.append(Timing(export.name, runtime, statistics.median(times), min(times), max(times), repeats))
                log.info("%-10s %-12s median %.3f s", export.name, runtime, timings[-1].median_s)
    return {
        "machine": machine() | {"threads": threads},
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


def main(output: Path, models: tuple[str, ...], repeats: int, threads: int | None) -> int:
    result = run(models, repeats, threads)
    write_report(output, "networks.json", "networks.md", result, markdown(result))
    return 0
