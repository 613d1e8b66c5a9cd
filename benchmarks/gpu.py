"""The GPU path, checked and timed on one CUDA machine: ``s2s bench gpu``.

What it needs there: PyTorch with CUDA, OpenCV, PyAV and soxr (no Triton, no ONNX Runtime GPU build, no
TensorRT). What it does, each part in the report with the GPU named:

1. Correctness. TV-L1 on the GPU (eager and fused) against the same solver on the CPU (and against OpenCV's
   when its contrib module is there), mean end-point error; each network on the GPU in every precision
   against float32 on the CPU (relative error); a short clip end to end on the GPU (fused TV-L1, float32
   and float16 networks) against the all-CPU chain.
2. TV-L1 per 10 s window (214 pairs of 340x256): eager as before (a look at convergence after every inner
   iteration, 64 pairs at a time), eager with a look every ten, fused, all pairs at once, several windows
   at once, and with the median filter off (only to show what it costs: that output differs).
3. Each network per 10 s window: float32, TF32, float16 and bfloat16 (autocast), 1 and more windows per
   call.
4. End to end per 10 s clip, one at a time: decode and resample on the CPU (PyAV), flow and networks on
   the GPU, the join on the CPU; stage medians.
5. Clips/s with several clips in flight: clips decoded by a pool of processes (one per spare core) while
   the GPU works on earlier ones; the GPU takes them a batch at a time, the batch's frame pairs solved at
   once (:func:`s2s.windowing.windows_on_device`) and its windows through each network in one call.

Every time is a median of ``repeats`` runs after a warm-up (compilation, cuDNN's algorithm search and the
CUDA context stay out of it), with the device synchronised before the clock is read.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import statistics
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from s2s.bench.measure import machine, timed, write_report
from s2s.constants import REGNET
from s2s.export.specs import ExportOptions, build_exports
from s2s.repository import MODEL_NAMES
from s2s.windowing import PreprocessOptions, decode_windows, generator_feed, postprocess, windows_on_device

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
#: the precision the end-to-end parts run the networks in (what a TensorRT FP16 plan computes)
SERVING_PRECISION = "fp16"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed_on(device: str, fn: Callable[[], object], repeats: int) -> tuple[dict, object]:
    """:func:`timed` with the device synchronised inside each timed call; the times and their median."""

    def call():
        out = fn()
        sync(device)
        return out

    times, out = timed(call, repeats)
    return {"times_s": times, "median_s": statistics.median(times)}, out


@contextlib.contextmanager
def precision(name: str, device: str):
    """float32 (TF32 off), TF32 matrix units, or autocast to float16 / bfloat16 (TF32 on beneath)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = name != "fp32"
    try:
        if name in ("fp16", "bf16"):
            dtype = torch.float16 if name == "fp16" else torch.bfloat16
            with torch.autocast(device_type=device.split(":")[0], dtype=dtype):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def rel_err(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = (torch.as_tensor(x).detach().double().cpu() for x in (a, b))
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-30))


def epe(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a.cpu() - b.cpu(), dim=-1).mean())


def clip_frames(frames: int, seed: int = 1) -> np.ndarray:
    """``frames`` consecutive grey 340x256 frames of a generated clip."""
    from s2s.synth import make_clip
    from s2s.tvl1 import bgr_to_grey

    bgr = make_clip(seed, frames / REGNET.fps + 0.5, kinds=("bounce", "strike", "slide")).frames[:frames]
    return bgr_to_grey(torch.from_numpy(bgr)).numpy()


# ------------------------------------------------------------------------------------------ flow
def flow_section(device: str, repeats: int, windows: tuple[int, ...], frames: int) -> dict:
    import s2s.tvl1 as tv

    out: dict = {"parity": {}, "timings": []}
    grey = torch.from_numpy(clip_frames(frames + 1))
    few = grey[:9]  # 8 pairs: the CPU reference takes seconds, not minutes
    cpu = tv.tvl1_consecutive(few, fuse=False)
    on_device = few.to(device)
    out["parity"]["eager_vs_cpu_epe_px"] = epe(tv.tvl1_consecutive(on_device, fuse=False), cpu)
    fused_stats: dict = {}
    start = time.perf_counter()
    fused = tv.tvl1(on_device[:-1], on_device[1:], fuse=True, stats=fused_stats)
    out["parity"]["fused_first_call_s"] = time.perf_counter() - start  # includes compiling
    out["parity"]["fused_vs_cpu_epe_px"] = epe(fused, cpu)
    failures = {name: f.failure for name, f in tv._FUSED.items() if f.failure}
    out["parity"]["fused_compiled"] = bool(tv._FUSED) and not failures
    out["parity"]["fused_failures"] = failures
    out["parity"]["cpu_max_abs_flow_px"] = float(cpu.abs().max())
    try:
        import cv2

        solver = cv2.optflow.DualTVL1OpticalFlow_create()
        g = few.numpy()
        ref = np.stack([solver.calc(g[i], g[i + 1], None) for i in range(g.shape[0] - 1)])
        out["parity"]["fused_vs_opencv_epe_px"] = epe(fused, torch.from_numpy(ref))
    except AttributeError:
        out["parity"]["fused_vs_opencv_epe_px"] = None  # opencv-contrib (cv2.optflow) is not installed

    window = grey.to(device)
    variants = [
        ("eager, a look every iteration, 64 pairs at a time (before)", dict(fuse=False, max_pairs=64, check=1)),
        ("eager, a look every 10 iterations, all pairs at once", dict(fuse=False, max_pairs=256, check=10)),
        ("fused, 64 pairs at a time", dict(fuse=True, max_pairs=64, check=10)),
        ("fused, all pairs at once (the default)", dict(fuse=True, max_pairs=256, check=10)),
        ("fused, all pairs at once, median filter off (cost only)", dict(fuse=True, max_pairs=256, check=10, median=1)),
    ]
    reference = None
    for label, v in variants:
        params = tv.TVL1Params(median_filtering=v.get("median", 5))
        tv.CHECK_EVERY = v["check"]
        stats: dict = {}
        try:
            timing, flow = timed_on(
                device, lambda v=v, p=params: tv.tvl1_consecutive(window, v["max_pairs"], p, v["fuse"]), repeats
            )
            tv.tvl1(window[:-1], window[1:], params, v["fuse"], stats)
        finally:
            tv.CHECK_EVERY = 10
        reference = flow if reference is None else reference
        row = {"variant": label, "windows": 1, **timing, "per_window_s": timing["median_s"], **stats}
        row["epe_vs_before_px"] = epe(flow, reference)
        out["timings"].append(row)
        log.info("tvl1 %s: %.3f s", label, timing["median_s"])
    for n in windows:
        if n == 1:
            continue
        first = window[:-1].repeat(n, 1, 1)  # n windows' pairs in one batch
        second = window[1:].repeat(n, 1, 1)
        timing, _ = timed_on(device, lambda a=first, b=second, n=n: tv.tvl1_pairs(a, b, 256 * n), repeats)
        out["timings"].append(
            {"variant": f"fused, {n} windows' pairs at once", "windows": n, **timing,
             "per_window_s": timing["median_s"] / n}
        )  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------ networks
def exports() -> dict:
    """The export's networks (the demo weights ``s2s export`` serves), by name."""
    return {e.name: e for e in build_exports(ExportOptions(), MODEL_NAMES, warn_noise=False)}


def networks_section(device: str, repeats: int, batches: tuple[int, ...], frames: int) -> dict:
    rows = []
    for name, export in exports().items():
        module = export.module.eval()
        one = export.examples(windows=1, frames=frames, seed=0)
        with torch.inference_mode():
            cpu_ref = module.cpu()(*one).float()
        module.to(device)
        for windows in batches:
            inputs = [x.to(device) for x in export.examples(windows=windows, frames=frames, seed=0)]
            for prec in PRECISIONS:
                try:
                    with torch.inference_mode(), precision(prec, device):
                        timing, out = timed_on(device, lambda m=module, x=inputs: m(*x), repeats)
                except Exception as exc:  # out of memory, or a precision this build cannot run
                    rows.append({"model": name, "precision": prec, "windows": windows,
                                 "error": f"{type(exc).__name__}: {exc}"[:200]})  # fmt: skip
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()
                    continue
                row = {"model": name, "precision": prec, "windows": windows, **timing,
                       "per_window_s": timing["median_s"] / windows}  # fmt: skip
                if windows == 1:
                    row["rel_err_vs_cpu_fp32"] = rel_err(out.float(), cpu_ref)
                rows.append(row)
                log.info("%s %s x%d: %.4f s", name, prec, windows, timing["median_s"])
        module.cpu()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return {"rows": rows}


# ------------------------------------------------------------------------------------------ end to end
class GpuChain:
    """The ensemble's chain in one process: decode on the CPU, TV-L1 and the networks on the GPU."""

    def __init__(self, device: str, window_frames: int, precision_name: str = SERVING_PRECISION) -> None:
        self.device, self.precision_name = device, precision_name
        nets = exports()
        self.modules = {name: e.module.eval().to(device) for name, e in nets.items()}
        z_dim = nets["generator"].extra["z_dim"]
        self.inputs = tuple(nets["generator"].extra["inputs"])
        self.options = PreprocessOptions(flow_method="tvl1", window_frames=window_frames, z_dim=z_dim)

    def networks(
        self, rgb: torch.Tensor, flow: torch.Tensor, motion: np.ndarray, frame_index: np.ndarray, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        m = self.modules
        index, z, motion = (torch.from_numpy(a).to(self.device) for a in (frame_index, z, motion))
        with torch.inference_mode(), precision(self.precision_name, self.device):
            fed = generator_feed(self.inputs, lambda name, frames: m[name](frames), rgb=rgb, flow=flow, motion=motion)
            mel = m["generator"](*fed, index, z)
            wav = m["vocoder"](mel)
        return wav.float().cpu().numpy(), mel.float().cpu().numpy()

    def run(self, decoded: list) -> list[tuple[np.ndarray, np.ndarray]]:
        """Windows of several decoded clips through flow and the networks at once; joined per clip."""
        windows = windows_on_device(decoded, self.options, self.device)
        # clips of other lengths have other numbers of distinct frames per window: batch every frame
        full = [w.every_frame() for w in windows]
        rgb, flow = (torch.cat([getattr(f, name) for f in full]) for name in ("rgb", "flow"))
        motion, index = (np.concatenate([getattr(f, name) for f in full]) for name in ("motion", "frame_index"))
        wav, mel = self.networks(rgb, flow, motion, index, np.concatenate([w.z for w in windows]))
        out, at = [], 0
        for w in windows:
            k = w.num_windows
            out.append(postprocess(wav[at : at + k], mel[at : at + k], w.layout, w.samples, w.mel_frames))
            at += k
        return out

    def decode(self, video: bytes):
        return decode_windows(video, self.options)


def end_to_end_section(device: str, repeats: int, in_flight: tuple[int, ...], clips: int, frames: int) -> dict:
    from s2s.synth import make_video

    chain = GpuChain(device, frames)
    window_s = frames / REGNET.fps
    out: dict = {"precision": chain.precision_name, "latency": {}, "throughput": [], "parity": {}}

    # correctness: a clip shorter than a window (it loops) through the GPU chain (float32 and float16)
    # against the all-CPU chain
    short_s = round(min(2.0, 0.6 * window_s), 2)
    short = make_video(duration_s=short_s, fps=30.0, width=640, height=360, seed=5)
    decoded = chain.decode(short)
    chain.precision_name = "fp32"
    (gpu32,) = chain.run([decoded])
    chain.precision_name = SERVING_PRECISION
    (gpu16,) = chain.run([decoded])
    cpu = CpuChain(chain)(short)
    out["parity"] = {
        "clip_s": short_s, "wav_rel_err_fp32": rel_err(gpu32[0], cpu[0]), "mel_rel_err_fp32": rel_err(gpu32[1], cpu[1]),
        f"wav_rel_err_{SERVING_PRECISION}": rel_err(gpu16[0], cpu[0]),
        f"mel_rel_err_{SERVING_PRECISION}": rel_err(gpu16[1], cpu[1]),
        "samples": int(gpu16[0].shape[0]), "cpu_samples": int(cpu[0].shape[0]),
    }  # fmt: skip

    # one window-long clip (10 s) at a time: stages
    video = make_video(duration_s=window_s, fps=30.0, width=640, height=360, seed=7)
    stages: dict[str, list[float]] = {"decode (cpu)": [], "flow (gpu)": [], "networks (gpu)": [], "join (cpu)": []}
    totals = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        decoded = chain.decode(video)
        t1 = time.perf_counter()
        (w,) = windows_on_device([decoded], chain.options, device)
        sync(device)
        t2 = time.perf_counter()
        wav, mel = chain.networks(w.rgb, w.flow, w.motion, w.frame_index, w.z)
        t3 = time.perf_counter()
        postprocess(wav, mel, w.layout, w.samples, w.mel_frames)
        t4 = time.perf_counter()
        if i == 0:
            continue  # warm-up
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[key].append(dt)
        totals.append(t4 - t0)
    out["latency"] = {
        "clip_s": window_s, "source": "640x360 H.264, 30 fps", "median_s": statistics.median(totals), "times_s": totals,
        "stages_median_s": {k: statistics.median(v) for k, v in stages.items()},
    }  # fmt: skip

    # several clips in flight: every clip is handed to the decoding processes at once (as requests queue in a
    # server), the GPU takes them ``batch`` at a time as they are decoded
    distinct = [make_video(duration_s=window_s, fps=30.0, width=640, height=360, seed=100 + k) for k in range(8)]
    videos = [distinct[k % len(distinct)] for k in range(clips)]
    workers = max(1, (os.cpu_count() or 2) - 2)  # a core each for this process's GPU work and the system
    out["decode_processes"] = workers
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(decode_windows, distinct[:workers], [chain.options] * workers))  # start every process
        for batch in in_flight:
            chain.run([chain.decode(v) for v in videos[:batch]])  # warm-up at this size
            sync(device)
            start = time.perf_counter()
            pending = [pool.submit(decode_windows, v, chain.options) for v in videos]
            done = 0
            for k in range(0, len(pending), batch):
                done += len(chain.run([f.result() for f in pending[k : k + batch]]))
            wall = time.perf_counter() - start
            out["throughput"].append(
                {"clips_in_flight": batch, "clips": done, "wall_s": wall, "clips_per_s": done / wall}
            )
            log.info("%d in flight: %.2f clips/s", batch, done / wall)
        # the two halves alone: decoding only (the pool), and the GPU only (clips decoded beforehand)
        start = time.perf_counter()
        decoded = list(pool.map(decode_windows, videos, [chain.options] * len(videos)))
        out["decode_only_clips_per_s"] = len(videos) / (time.perf_counter() - start)
    batch = max(in_flight)
    timing, _ = timed_on(device, lambda: chain.run(decoded[:batch]), repeats)
    out["gpu_only"] = {"clips_in_flight": batch, **timing, "clips_per_s": batch / timing["median_s"]}
    return out


class CpuChain:
    """The same chain on the CPU in float32 (TV-L1 in PyTorch, unfused): the parity reference."""

    def __init__(self, gpu: GpuChain) -> None:
        self.options, self.inputs = gpu.options, gpu.inputs
        self.modules = {name: e.module.eval() for name, e in exports().items()}

    def __call__(self, video: bytes) -> tuple[np.ndarray, np.ndarray]:
        decoded = decode_windows(video, self.options)
        (w,) = windows_on_device([decoded], self.options, "cpu")
        m = self.modules
        with torch.inference_mode():
            index, z = torch.from_numpy(w.frame_index), torch.from_numpy(w.z)
            fed = generator_feed(self.inputs, lambda name, frames: m[name](frames), rgb=w.rgb, flow=w.flow,
                                 motion=torch.from_numpy(w.motion))  # fmt: skip
            mel = m["generator"](*fed, index, z)
            wav = m["vocoder"](mel)
        return postprocess(wav.numpy(), mel.numpy(), w.layout, w.samples, w.mel_frames)


# ------------------------------------------------------------------------------------------ report
def run(
    device: str = "cuda",
    repeats: int = 5,
    batches: tuple[int, ...] = (1, 4, 16),
    in_flight: tuple[int, ...] = (1, 4, 16),
    clips: int = 32,
    sections: tuple[str, ...] = ("flow", "networks", "end_to_end"),
    window_frames: int = REGNET.frames_per_window,
) -> dict:
    """Every section asked for; ``window_frames`` below RegNet's 215 only to try the harness quickly."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("s2s bench gpu needs a CUDA device (torch.cuda.is_available() is False)")
    result: dict = {"machine": machine(), "torch": torch.__version__, "cuda": torch.version.cuda, "repeats": repeats,
                    "device": device, "window_frames": window_frames}  # fmt: skip
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        result["gpu"] = {"name": props.name, "memory_gib": props.total_memory / 2**30,
                         "multiprocessors": props.multi_processor_count}  # fmt: skip
    runs = {
        "flow": lambda: flow_section(device, repeats, in_flight, window_frames),
        "networks": lambda: networks_section(device, repeats, batches, window_frames),
        "end_to_end": lambda: end_to_end_section(device, repeats, in_flight, clips, window_frames),
    }
    for name in sections:
        try:
            result[name] = runs[name]()
        except Exception as exc:  # one part failing still reports the others
            log.exception("%s failed", name)
            result[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
    return result


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def report(r: dict) -> str:
    gpu = r.get("gpu", {}).get("name", "cpu")
    lines = [f"GPU path on {gpu} (CPU: {r['machine']['cpu']}, {r['machine']['cores']} cores; torch {r['torch']}, "
             f"CUDA {r['cuda']}); medians of {r['repeats']}", ""]  # fmt: skip
    flow = r.get("flow", {})
    if "error" in flow:
        lines += [f"TV-L1: failed: {flow['error']}", ""]
    elif flow:
        p = flow["parity"]
        lines += [
            f"TV-L1 parity (8 pairs): eager vs CPU EPE {p['eager_vs_cpu_epe_px']:.5f} px, fused vs CPU "
            f"{p['fused_vs_cpu_epe_px']:.5f} px (compiled: {p['fused_compiled']}, first call "
            f"{p['fused_first_call_s']:.1f} s), fused vs OpenCV {p['fused_vs_opencv_epe_px']}",
            "", "| TV-L1 variant | windows | median (s) | per 10 s window (s) | EPE vs first row (px) |",
            "|---|---:|---:|---:|---:|",
        ]  # fmt: skip
        for t in flow["timings"]:
            e = f"{t['epe_vs_before_px']:.5f}" if "epe_vs_before_px" in t else "-"
            lines.append(f"| {t['variant']} | {t['windows']} | {t['median_s']:.3f} | {t['per_window_s']:.3f} | {e} |")
        lines.append("")
    nets = r.get("networks", {})
    if "error" in nets:
        lines += [f"Networks: failed: {nets['error']}", ""]
    elif nets:
        lines += ["| network | precision | windows per call | per window (ms) | rel. error vs CPU fp32 |",
                  "|---|---|---:|---:|---:|"]  # fmt: skip
        for row in nets["rows"]:
            if "error" in row:
                lines.append(f"| {row['model']} | {row['precision']} | {row['windows']} | {row['error']} | |")
                continue
            err = f"{row['rel_err_vs_cpu_fp32']:.2e}" if "rel_err_vs_cpu_fp32" in row else ""
            lines.append(
                f"| {row['model']} | {row['precision']} | {row['windows']} | {_ms(row['per_window_s'])} | {err} |"
            )
        lines.append("")
    e2e = r.get("end_to_end", {})
    if "error" in e2e:
        lines += [f"End to end: failed: {e2e['error']}", ""]
    elif e2e:
        lat, par, prec = e2e["latency"], e2e["parity"], e2e["precision"]
        stages = ", ".join(f"{k} {_ms(v)} ms" for k, v in lat["stages_median_s"].items())
        lines += [
            f"End to end, one {lat['clip_s']:.1f} s clip ({lat['source']}), networks in {prec}: "
            f"{_ms(lat['median_s'])} ms ({stages})",
            f"Parity, {par['clip_s']} s clip vs the all-CPU chain: waveform rel. error fp32 "
            f"{par['wav_rel_err_fp32']:.2e}, {prec} {par['wav_rel_err_' + prec]:.2e}; mel fp32 "
            f"{par['mel_rel_err_fp32']:.2e}, {prec} {par['mel_rel_err_' + prec]:.2e}",
            "", "| clips in flight | clips | wall (s) | clips/s |", "|---:|---:|---:|---:|",
        ]  # fmt: skip
        for t in e2e["throughput"]:
            lines.append(f"| {t['clips_in_flight']} | {t['clips']} | {t['wall_s']:.2f} | {t['clips_per_s']:.2f} |")
        gpu_only = e2e["gpu_only"]
        lines += [
            "",
            f"The halves alone: decoding in {e2e['decode_processes']} processes {e2e['decode_only_clips_per_s']:.2f} "
            f"clips/s; the GPU alone (flow and networks, {gpu_only['clips_in_flight']} clips decoded beforehand) "
            f"{gpu_only['clips_per_s']:.2f} clips/s",
        ]
    return "\n".join(lines) + "\n"


def main(output: Path, device: str, repeats: int, batches, in_flight, clips: int, sections, window_frames: int) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(device, repeats, tuple(batches), tuple(in_flight), clips, tuple(sections), window_frames)
    write_report(output, "gpu.json", "gpu.md", result, report(result))
    return 1 if any(isinstance(result.get(s), dict) and "error" in result[s] for s in sections) else 0
