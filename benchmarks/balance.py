"""Load balancing: the gateway in front of one Triton server, then two (gRPC ``round_robin`` over an
``ipv4:`` address list), the same jobs at the same concurrency, side by side in one run.

Reported per setup: clips/s through the gateway (upload to result), median job seconds, and how many
window requests each server answered (from its own metrics). On a machine where the servers share the
same cores the throughput need not grow; the split shows whether the balancing is even. Not a test:
run it with ``s2s bench balance``.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx

from s2s.bench.measure import cpu_name, metric_sum, write_report
from s2s.client.triton import S2SClient
from s2s.runtime.server import ServerOptions, TritonServer, free_ports
from s2s.synth import make_video


def served(server: TritonServer) -> float:
    """Requests the ``s2s`` ensemble of ``server`` answered, from its metrics."""
    with urllib.request.urlopen(server.options.metrics_url, timeout=10) as response:
        return metric_sum(response.read().decode(), "nv_inference_request_success", model="s2s")


class LocalGateway:
    """`s2s gateway --no-auth` on a loopback port, for the benchmark's own use."""

    def __init__(self, triton_url: str, data_dir: Path, concurrency: int) -> None:
        (self.port,) = free_ports(1)
        cmd = [sys.executable, "-m", "s2s", "gateway", "--no-auth", "--port", str(self.port), "--triton-url",
               triton_url, "--data-dir", str(data_dir), "--workers", str(concurrency), "--max-queued", "64",
               "--windows-per-job", "2", "--windows-in-flight", str(2 * concurrency)]  # fmt: skip
        self.log = (data_dir.parent / f"gateway-{self.port}.log").open("w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.http.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not become ready (see {self.log.name})")
            time.sleep(0.3)

    def run(self, clip: bytes) -> float:
        """One job, upload to result; its seconds."""
        began = time.monotonic()
        job = self.http.post("/v1/jobs", files={"file": ("clip.mp4", clip, "video/mp4")}).json()
        while (state := self.http.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("done", "failed"):
            time.sleep(0.2)
        if state["status"] != "done":
            raise RuntimeError(f"job failed: {state['error']}")
        return time.monotonic() - began

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def measure(servers: list[TritonServer], clip: bytes, jobs: int, concurrency: int, workdir: Path) -> dict:
    target = servers[0].options.grpc_url if len(servers) == 1 else "ipv4:" + ",".join(
        s.options.grpc_url for s in servers
    )  # fmt: skip
    gateway = LocalGateway(target, workdir / f"data-{len(servers)}", concurrency)
    try:
        gateway.run(clip)  # warm-up through this gateway
        before = [served(s) for s in servers]
        began = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            seconds = list(pool.map(lambda _: gateway.run(clip), range(jobs)))
        wall = time.monotonic() - began
        split = [served(s) - b for s, b in zip(servers, before, strict=True)]
    finally:
        gateway.close()
    return {"servers": len(servers), "jobs": jobs, "concurrency": concurrency, "wall_s": wall,
            "clips_per_s": jobs / wall, "job_s_median": statistics.median(seconds), "windows_per_server": split,
            "imbalance": (max(split) - min(split)) / max(1.0, sum(split) / len(split))}  # fmt: skip


def run(repository: Path, jobs: int, concurrency: int, duration_s: float) -> dict:
    clip = make_video(duration_s=duration_s, fps=30.0, width=640, height=360, seed=2)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="s2s-bench-balance-") as tmp:
        servers = []
        for _ in range(2):
            options = ServerOptions.local(repository, shm_default_byte_size=64 * 1024 * 1024, log_level="error",
                                          exit_timeout_s=10)  # fmt: skip
            servers.append(stack.enter_context(TritonServer(options)))
            with S2SClient(options.grpc_url, timeout_s=3600) as client:
                client.generate(clip)  # warm-up: every instance has run once
        rows = [measure(servers[:n], clip, jobs, concurrency, Path(tmp)) for n in (1, 2)]
    return {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "clip": {"duration_s": duration_s, "source": "generated 640x360 30 fps H.264"},
        "setups": rows,
        "throughput_ratio": rows[1]["clips_per_s"] / rows[0]["clips_per_s"],
    }


def markdown(result: dict) -> str:
    lines = [
        f"{result['setups'][0]['jobs']} jobs of {result['clip']['duration_s']:g} s clips through the gateway, "
        f"{result['setups'][0]['concurrency']} at once, {result['machine']['cpu']}, {result['machine']['cores']} "
        "cores; the Triton servers share the machine.",
        "",
        "| Triton servers | clips/s | median job (s) | window requests per server | imbalance |",
        "|---:|---:|---:|---|---:|",
    ]
    for r in result["setups"]:
        split = " / ".join(f"{n:.0f}" for n in r["windows_per_server"])
        lines.append(f"| {r['servers']} | {r['clips_per_s']:.3f} | {r['job_s_median']:.1f} | {split} | "
                     f"{100 * r['imbalance']:.0f} % |")  # fmt: skip
    lines += ["", f"Throughput, 2 servers / 1: {result['throughput_ratio']:.2f}x."]
    return "\n".join(lines) + "\n"


def main(repository: Path, output: Path, jobs: int, concurrency: int, duration_s: float) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per status poll otherwise
    result = run(repository, jobs, concurrency, duration_s)
    write_report(output, "balance.json", "balance.md", result, markdown(result))
    return 0
