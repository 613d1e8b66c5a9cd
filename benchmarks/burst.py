"""Memory and throughput under a burst: N clips sent at once to the embedded Triton, Triton's memory
(server and its Python-backend stubs: its process group) sampled throughout.

Reported: the group's RSS when idle (after one warm-up clip), its peak during the burst, and a settle
time after it (has the peak been returned?), with the burst's wall time and clips/s; one row per
concurrency. RSS counts shared memory in each process that maps it, so the figures err high. Not a
test: run it with ``s2s bench burst``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from s2s.bench.measure import cpu_name, openvino_version, write_report
from s2s.client.triton import S2SClient
from s2s.runtime.server import ServerOptions, TritonServer, live_processes
from s2s.synth import make_video


def process_rss(pgid: int) -> dict[str, int]:
    """Bytes resident in each process of process group ``pgid`` (from /proc), by what it runs: "server",
    or the model a Python-backend stub serves (its first argument is ``<repository>/<model>/<version>/...``),
    "#<pid>" told apart where a model has several instances."""
    found = {}
    for pid, group, cmdline in live_processes():
        if group != pgid:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # gone meanwhile
        args = cmdline.split()
        name = Path(args[1]).parts[-3] if "backend_stub" in args[0] and len(args) > 1 else "server"
        found[f"{name}#{pid}"] = next(
            (int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
    return found


def group_rss(pgid: int) -> int:
    """Bytes resident in the processes of process group ``pgid``."""
    return sum(process_rss(pgid).values())


def burst(url: str, clip: bytes, clips: int, pgid: int, settle_s: float) -> dict:
    idle = group_rss(pgid)
    samples, done = [idle], threading.Event()
    instance_peaks: dict[str, int] = {}

    def sample() -> None:
        while not done.is_set():
            each = process_rss(pgid)
            samples.append(sum(each.values()))
            for name, rss in each.items():
                instance_peaks[name] = max(rss, instance_peaks.get(name, 0))
            time.sleep(0.25)

    def one() -> None:
        with S2SClient(url, timeout_s=3600) as client:
            client.generate(clip)

    sampler = threading.Thread(target=sample)
    sampler.start()
    senders = [threading.Thread(target=one) for _ in range(clips)]
    began = time.monotonic()
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    wall = time.monotonic() - began
    done.set()
    sampler.join()
    time.sleep(settle_s)
    after = group_rss(pgid)
    per_model: dict[str, int] = {}  # the largest peak among a model's instances
    for name, rss in instance_peaks.items():
        model = name.split("#")[0]
        per_model[model] = max(rss, per_model.get(model, 0))
    return {"clips": clips, "idle_bytes": idle, "peak_bytes": max(samples), "after_bytes": after,
            "after_vs_idle": after / idle - 1.0, "wall_s": wall, "clips_per_s": clips / wall,
            "instance_peak_bytes": per_model}  # fmt: skip


def run(repository: Path, concurrency: tuple[int, ...], duration_s: float = 10.0, settle_s: float = 10.0) -> dict:
    clip = make_video(duration_s=duration_s, fps=30.0, width=640, height=360, seed=1)
    options = ServerOptions.local(repository, shm_default_byte_size=64 * 1024 * 1024, log_level="error",
                                  exit_timeout_s=10)  # fmt: skip
    rows = []
    with TritonServer(options) as server:
        with S2SClient(options.grpc_url, timeout_s=3600) as client:
            client.generate(clip)  # warm-up: every instance has run once
        time.sleep(settle_s)
        for clips in concurrency:
            rows.append(burst(options.grpc_url, clip, clips, os.getpgid(server.process.pid), settle_s))
    return {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "versions": {"openvino": openvino_version()},
        "clip": {"duration_s": duration_s, "source": "generated 640x360 30 fps H.264"},
        "settle_s": settle_s,
        "bursts": rows,
    }


def markdown(result: dict) -> str:
    gb = 1e9
    lines = [
        f"Bursts of {result['clip']['duration_s']:g} s clips ({result['clip']['source']}) sent at once to the embedded "
        f"Triton, {result['machine']['cpu']}, {result['machine']['cores']} cores; RSS of the server and its stubs.",
        "",
        f"| clips at once | idle RSS (GB) | peak RSS (GB) | {result['settle_s']:g} s after (GB) | after vs idle | "
        "burst wall (s) | clips/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["bursts"]:
        lines.append(
            f"| {r['clips']} | {r['idle_bytes'] / gb:.2f} | {r['peak_bytes'] / gb:.2f} | {r['after_bytes'] / gb:.2f} | "
            f"{100 * r['after_vs_idle']:+.1f} % | {r['wall_s']:.1f} | {r['clips_per_s']:.3f} |"
        )
    models = sorted({m for r in result["bursts"] for m in r["instance_peak_bytes"]})
    lines += ["", "Peak RSS of one instance (the largest of a model's instances), GB:", "",
              "| clips at once | " + " | ".join(models) + " |", "|---:|" + "---:|" * len(models)]  # fmt: skip
    for r in result["bursts"]:
        peaks = r["instance_peak_bytes"]
        lines.append(f"| {r['clips']} | " + " | ".join(f"{peaks.get(m, 0) / gb:.2f}" for m in models) + " |")
    return "\n".join(lines) + "\n"


def main(repository: Path, output: Path, concurrency: tuple[int, ...], duration_s: float) -> int:
    result = run(repository, concurrency, duration_s)
    write_report(output, "burst.json", "burst.md", result, markdown(result))
    return 0
