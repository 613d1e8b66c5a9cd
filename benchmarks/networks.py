"""Time each network on one 10 s window: PyTorch eager, ONNX Runtime, and what the embedded backend
serves with the openvino CPU accelerator (OpenVINO fp32, and bf16 where the CPU computes it), on this
machine's CPU.

One window = T = 215 frames for the TSN encoders and the generator, 860 mel frames for the vocoder.
All runtimes get the same inputs and the same thread count; each is warmed up once, then timed
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

from s2s.bench.measure import machine, openvino_version, timed, write_report
from s2s.constants import REGNET
from s2s.export.onnx_export import export_onnx
from s2s.export.specs import ExportOptions, build_exports
from s2s.export.triton_config import ServingOptions, model_config, model_config_dict
from s2s.repository import MODEL_NAMES
from s2s.runtime.ort_backend import ModelSpec, OrtModel, native_bf16

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

            runtimes = [("pytorch", eager), ("onnxruntime", lambda s=session, f=feeds: s.run(None, f))]
            for precision in ("fp32", "bf16") if native_bf16() else ("fp32",):
                model = served(export, path, precision, threads)
                runtimes.append((f"openvino-{precision}", lambda m=model, f=feeds: m.run(f)))
            for runtime, fn in runtimes:
                times, _ = timed(fn, repeats)
                timings.append(Timing(export.name, runtime, statistics.median(times), min(times), max(times), repeats))
                log.info("%-10s %-12s median %.3f s", export.name, runtime, timings[-1].median_s)
    return {
        "machine": machine() | {"threads": threads},
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "openvino": openvino_version(),
            "numpy": np.__version__,
        },
        "window": {"frames": REGNET.frames_per_window, "mel_frames": REGNET.mel_frames_per_window},
        "timings": [asdict(t) for t in timings],
    }


def served(export, path: Path, precision: str, threads: int) -> OrtModel:
    """The model as the embedded backend serves it with the openvino accelerator in ``precision``."""
    config = model_config_dict(model_config(export, ServingOptions(warmup_frames=0, cpu_precision=precision)))
    config["parameters"] = {"intra_op_thread_count": {"string_value": str(threads)}}
    return OrtModel(ModelSpec.from_config(config), path)


RUNTIMES = {"pytorch": "PyTorch eager", "onnxruntime": "ONNX Runtime fp32", "openvino-fp32": "OpenVINO fp32",
            "openvino-bf16": "OpenVINO bf16"}  # fmt: skip


def markdown(result: dict) -> str:
    m = result["machine"]
    rows: dict[str, dict] = {}
    for t in result["timings"]:
        rows.setdefault(t["model"], {})[t["runtime"]] = t["median_s"]
    present = [r for r in RUNTIMES if any(r in row for row in rows.values())]
    fastest = present[-1]
    versions = result["versions"]
    lines = [
        f"Per 10 s window ({result['window']['frames']} frames / {result['window']['mel_frames']} mel frames), "
        f"{m['cpu']}, {m['threads']} threads, median of {result['timings'][0]['repeats']} runs "
        f"(torch {versions['torch']}, onnxruntime {versions['onnxruntime']}, openvino {versions.get('openvino')}).",
        "",
        "| model | " + " | ".join(f"{RUNTIMES[r]} (s)" for r in present) + f" | {RUNTIMES[fastest]} vs ORT |",
        "|---|" + "---:|" * (len(present) + 1),
    ]
    rows["**all**"] = {r: sum(row[r] for row in rows.values()) for r in present}
    for model, row in rows.items():
        cells = " | ".join(f"{row[r]:.3f}" for r in present)
        lines.append(f"| {model} | {cells} | {row['onnxruntime'] / row[fastest]:.2f}x |")
    return "\n".join(lines) + "\n"


def main(output: Path, models: tuple[str, ...], repeats: int, threads: int | None) -> int:
    result = run(models, repeats, threads)
    write_report(output, "networks.json", "networks.md", result, markdown(result))
    return 0
