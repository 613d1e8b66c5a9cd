"""Optical flow for one window: OpenCV TV-L1 on the CPU vs PyTorch TV-L1 (s2s.tvl1) batched, per device.

The frames are a generated clip's (s2s.synth, 340x256 like the pipeline): ``frames`` consecutive frames,
``frames - 1`` pairs. OpenCV solves the pairs one after the other with all cores (as the preprocess step
does); PyTorch solves them all at once (``max_pairs`` per batch) on each device asked for (cpu, cuda).
Each is warmed up once and timed ``repeats`` times; medians. The per-window figure scales the measured
time to RegNet's 214 pairs per 10 s window. Agreement: mean end-point error between the two. Not a
test: run it with ``s2s bench flow``.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

import cv2
import numpy as np
import torch

from s2s.bench.measure import cpu_name, timed, write_report
from s2s.constants import REGNET
from s2s.synth import make_clip
from s2s.tvl1 import tvl1_consecutive

log = logging.getLogger(__name__)

PAIRS_PER_WINDOW = REGNET.frames_per_window - 1


def run(frames: int = 16, devices: tuple[str, ...] = ("cpu",), repeats: int = 3, max_pairs: int = 256) -> dict:
    size = (REGNET.flow_width, REGNET.flow_height)
    bgr = make_clip(1, frames / REGNET.fps, kinds=("bounce", "strike")).frames[:frames]
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in bgr])
    pairs = frames - 1
    solver = cv2.optflow.DualTVL1OpticalFlow_create()

    def opencv():
        return np.stack([solver.calc(grey[i], grey[i + 1], None) for i in range(pairs)])

    rows = []
    times, reference = timed(opencv, repeats)
    rows.append({"implementation": "opencv", "device": f"cpu ({cv2.getNumThreads()} threads)", "times_s": times})
    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            log.warning("skipping %s: no CUDA device", device)
            continue
        g = torch.from_numpy(grey).to(device)

        def torch_flow(g=g, device=device):
            out = tvl1_consecutive(g, max_pairs)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return out

        times, flow = timed(torch_flow, repeats)
        name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else cpu_name()
        epe = float(np.linalg.norm(flow.cpu().numpy() - reference, axis=-1).mean())
        rows.append(
            {"implementation": "torch", "device": f"{device} ({name})", "times_s": times, "epe_vs_opencv_px": epe}
        )
    for row in rows:
        median = statistics.median(row["times_s"])
        row.update(median_s=median, per_pair_ms=1000 * median / pairs, per_window_s=median / pairs * PAIRS_PER_WINDOW)
    return {
        "frames": frames, "pairs": pairs, "size": list(size), "repeats": repeats, "max_pairs": max_pairs,
        "cpu": cpu_name(), "torch": torch.__version__, "opencv": cv2.__version__, "results": rows,
    }  # fmt: skip


def report(results: dict) -> str:
    lines = [
        f"TV-L1 on {results['pairs']} pairs of {results['size'][0]}x{results['size'][1]} frames, median of "
        f"{results['repeats']} (CPU: {results['cpu']}; torch {results['torch']}, OpenCV {results['opencv']})",
        "",
        "| implementation | device | per pair (ms) | per 10 s window, 214 pairs (s) | EPE vs OpenCV (px) |",
        "|---|---|---:|---:|---:|",
    ]
    for row in results["results"]:
        epe = f"{row['epe_vs_opencv_px']:.4f}" if "epe_vs_opencv_px" in row else "-"
        cells = (row["implementation"], row["device"], f"{row['per_pair_ms']:.1f}", f"{row['per_window_s']:.2f}", epe)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(output: Path, frames: int, devices: tuple[str, ...], repeats: int, max_pairs: int) -> int:
    results = run(frames, devices, repeats, max_pairs)
    write_report(output, "results.json", "report.md", results, report(results))
    print(f"results: {output}")  # noqa: T201
    return 0
