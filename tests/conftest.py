"""Shared test helpers: run `s2s serve` as a real process and inspect what it leaves behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from s2s.runtime.server import ADMIN_KEY_ENV, admin_headers, free_ports, live_processes

#: the admin key of every `s2s serve` the tests start (Triton's admin APIs need it)
ADMIN_KEY = "tests-admin-key-7f3a9c2e5b"
ADMIN_HEADERS, ADMIN_GRPC_HEADERS = admin_headers(ADMIN_KEY, "http"), admin_headers(ADMIN_KEY, "grpc")


def leftovers(*, pgid: int | None = None, mentioning: str | None = None) -> list[tuple[int, int, str]]:
    """Live processes in process group ``pgid`` or whose command line mentions ``mentioning``."""
    return [
        p
        for p in live_processes()
        if p[0] != os.getpid() and ((pgid is not None and p[1] == pgid) or (mentioning and mentioning in p[2]))
    ]


def wait_until_gone(*, pgid: int | None = None, mentioning: str | None = None, timeout_s: float = 15.0) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        rest = leftovers(pgid=pgid, mentioning=mentioning)
        if not rest or time.monotonic() > deadline:
            return rest
        time.sleep(0.2)


@dataclass
class Serve:
    """`s2s serve` running as a child process on free ports."""

    repository: Path
    workdir: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    ports: list[int] = field(default_factory=lambda: free_ports(3))

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports[0]}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports[1]}"

    def start(self) -> Serve:
        self.stdout_path = self.workdir / "serve.stdout"
        self.stderr_path = self.workdir / "serve.stderr"
        cmd = [
            sys.executable, "-m", "s2s", "serve",
            "--model-repository", str(self.repository),
            "--http-port", str(self.ports[0]), "--grpc-port", str(self.ports[1]),
            "--metrics-port", str(self.ports[2]),
            "--address", "127.0.0.1", "--exit-timeout", "5", *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=self.stdout_path.open("w"), stderr=self.stderr_path.open("w"), stdin=subprocess.DEVNULL,
            env={**os.environ, ADMIN_KEY_ENV: ADMIN_KEY},
        )  # fmt: skip
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> Serve:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"s2s serve exited with {self.proc.returncode}:\n{self.stderr()}")
            if "Triton is ready" in self.stdout():
                return self
            time.sleep(0.2)
        raise AssertionError(f"s2s serve not ready after {timeout_s} s:\n{self.stderr()[-3000:]}")

    def wait_exit(self, timeout_s: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout_s)

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    @property
    def server_pid(self) -> int:
        match = re.search(r"\(pid (\d+)\)", self.stdout())
        assert match, f"no server pid in: {self.stdout()!r}"
        return int(match.group(1))

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self, signum: int = signal.SIGTERM) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def serve_factory(tmp_path):
    """Start `s2s serve` processes; every one is stopped at teardown."""
    started: list[Serve] = []

    def make(repository: Path, *extra: str) -> Serve:
        workdir = tmp_path / f"serve{len(started)}"
        workdir.mkdir()
        serve = Serve(repository, workdir, list(extra)).start()
        started.append(serve)
        return serve

    yield make
    for serve in started:
        serve.stop()


def _gpu_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    """The chart's tests run first; GPU tests are marked `gpu` and reported as skipped (never passed) on
    machines without CUDA.

    Why first: helm-python-sdk 0.2.2 embeds a Go runtime, which segfaults (in runtime.futex, on the main
    thread) when it is first called after OpenVINO has run inference in the same process, as the
    benchmark tests' in-process reference does. Called before, it stays well.
    """
    items.sort(key=lambda item: item.path.name != "test_k8s.py")  # stable: the rest keep their order
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (CUDA) - skipped on this CPU-only machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


#: A repository that runs fast on CPU: the small RegNet configuration and 20-frame (0.93 s) windows.
SMALL_WINDOW = 20


def export_small_repository(path: Path, max_duration_s: float = 5.0, **limits) -> Path:
    """Export every model and the pipeline into ``path`` with short windows and no warm-up."""
    from s2s.export.onnx_export import export_repository
    from s2s.export.specs import ExportOptions
    from s2s.export.triton_config import ServingOptions
    from s2s.video import VideoLimits
    from s2s.windowing import PreprocessOptions

    preprocess = PreprocessOptions(
        window_frames=SMALL_WINDOW, limits=VideoLimits(max_duration_s=max_duration_s, **limits)
    )
    export_repository(
        path,
        ExportOptions(generator_config="small"),
        ServingOptions(warmup_frames=0, cpu_precision="fp32"),
        None,
        None,
        preprocess,
    )
    return path
