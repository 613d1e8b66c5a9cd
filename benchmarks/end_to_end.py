"""End-to-end seconds per clip (10 s by default): the ``s2s`` ensemble in the embedded Triton vs the same
chain in-process.

For each flow method, one run: a generated 10 s clip goes through the ensemble (gRPC, after one
warm-up request) ``repeats`` times, then through the in-process reference built on the *same ONNX
files* in ONNX Runtime, with the same preprocess code - so the ratio is what serving through Triton
costs (tensor copies through shared memory, the ensemble's scheduling, Python-backend stubs) on this
machine. The in-process runs also give the stage split (preprocess / networks / postprocess). A clip
shorter than a window also times the networks on every frame of its looped window (what the encoders
computed before the generator looped their features), alternating with the distinct frames.

The repository's networks are reused as they are; the pipeline configs for each flow method are
written into a temporary repository whose network folders link to the real ones.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import onnxruntime

from s2s.bench.measure import cpu_name, openvino_version, write_report
from s2s.bench.reference import ReferencePipeline
from s2s.client.triton import S2SClient
from s2s.constants import REGNET
from s2s.export.triton_config import read_preprocess_options, relink_repository
from s2s.repository import MANIFEST
from s2s.runtime.server import ServerOptions, TritonServer
from s2s.synth import make_video
from s2s.windowing import postprocess


def _median(times: list[float]) -> float:
    return statistics.median(times)


def run(repository: Path, methods: tuple[str, ...], repeats: dict[str, int], duration_s: float = 10.0) -> dict:
    manifest = json.loads((repository / MANIFEST).read_text())
    exported = read_preprocess_options(repository)
    clip = make_video(duration_s=duration_s, fps=30.0, width=640, height=360, seed=1)
    results = []
    for method in methods:
        n = repeats.get(method, 1)
        # one request at a time: one preprocess instance with every core for OpenCV, on both sides
        threads = os.cpu_count() or 1
        preprocess = replace(exported, flow_method=method, instances=1, opencv_threads=threads)
        cv2.setNumThreads(threads)
        with tempfile.TemporaryDirectory(prefix="s2s-bench-repo-") as tmp:
            relink_repository(repository, Path(tmp), preprocess)
            options = ServerOptions.local(
                Path(tmp), shm_default_byte_size=64 * 1024 * 1024, log_level="error", exit_timeout_s=10
            )
            with TritonServer(options), S2SClient(options.grpc_url, timeout_s=3600) as client:
                client.generate(clip)  # warm-up
                served = [client.generate(clip).seconds for _ in range(n)]
        reference = ReferencePipeline.served(repository, preprocess)
        reference(clip)  # warm-up
        stages: dict[str, list[float]] = {"preprocess": [], "networks": [], "postprocess": [], "total": []}
        every_frame: list[float] = []
        for _ in range(n):
            t0 = time.perf_counter()
            windows = reference.preprocess(clip)
            t1 = time.perf_counter()
            waveforms, mels = reference.run_networks(windows)
            t2 = time.perf_counter()
            postprocess(waveforms, mels, windows.layout, windows.samples, windows.mel_frames)
            t3 = time.perf_counter()
            for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                stages[key].append(value)
            if windows.rgb.shape[1] < windows.frame_index.shape[1]:
                looped = windows.every_frame()
                t4 = time.perf_counter()
                reference.run_networks(looped)
                every_frame.append(time.perf_counter() - t4)
        results.append(
            {
                "flow_method": method,
                "repeats": n,
                "ensemble_s": _median(served),
                "in_process_s": _median(stages["total"]),
                "in_process_stages_s": {k: _median(v) for k, v in stages.items() if k != "total"},
                "networks_every_frame_s": _median(every_frame) if every_frame else None,
                "distinct_frames": int(windows.rgb.shape[1]),
                "ensemble_runs_s": served,
            }
        )
    return {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "versions": {"onnxruntime": onnxruntime.__version__, "openvino": openvino_version()},
        "clip": {
            "duration_s": duration_s,
            "source": "generated 640x360 30 fps H.264",
            "windows": math.ceil(duration_s / REGNET.window_s - 1e-9),
        },
        "weights": "seeded" if any(m.get("noise_weights") for m in manifest["models"].values()) else "checkpoints",
        "results": results,
    }


def markdown(result: dict) -> str:
    lines = [
        f"End to end, one {result['clip']['duration_s']:g} s clip ({result['clip']['source']}), "
        f"{result['machine']['cpu']}, {result['machine']['cores']} cores; median of the runs shown.",
        "",
        "| flow | runs | ensemble in Triton (s) | in-process, same ONNX (s) | Triton / in-process | "
        "preprocess (s) | networks (s) | postprocess (s) | x real time (ensemble) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        st = r["in_process_stages_s"]
        lines.append(
            f"| {r['flow_method']} | {r['repeats']} | {r['ensemble_s']:.2f} | {r['in_process_s']:.2f} | "
            f"{r['ensemble_s'] / r['in_process_s']:.3f} | {st['preprocess']:.2f} | {st['networks']:.2f} | "
            f"{st['postprocess']:.3f} | {result['clip']['duration_s'] / r['ensemble_s']:.2f} |"
        )
    looped = [r for r in result["results"] if r.get("networks_every_frame_s")]
    if looped:
        lines += ["", "Networks in-process, the clip's distinct frames (features looped by the generator) vs every "
                  "frame of its looped window (as before), alternating runs:", "",
                  "| flow | distinct frames | networks, distinct (s) | networks, every frame (s) | every / distinct |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for r in looped:
            mine, old = r["in_process_stages_s"]["networks"], r["networks_every_frame_s"]
            lines.append(f"| {r['flow_method']} | {r['distinct_frames']} | {mine:.2f} | {old:.2f} | {old / mine:.2f} |")
    return "\n".join(lines) + "\n"


def main(
    repository: Path, output: Path, methods: tuple[str, ...], repeats: dict[str, int], clip_s: float = REGNET.window_s
) -> int:
    result = run(repository, methods, repeats, duration_s=clip_s)
    write_report(output, "pipeline.json", "pipeline.md", result, markdown(result))
    return 0
