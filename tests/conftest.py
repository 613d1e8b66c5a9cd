"""Shared test helpers: run `s2s serve` as a real process and inspect what it leaves behind."""

from __future__ import annotations

import math
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

from s2s.constants import REGNET
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


#: A repository that runs fast on CPU: the small RegNet configuration and 20-frame (0.93 s) windows,
#: consecutive windows sharing 4 frames (a window every 16 frames, 0.74 s).
SMALL_WINDOW = 20
SMALL_OVERLAP = 4


def small_windows(seconds: float) -> int:
    """Windows of the small repository in a video of ``seconds``."""
    from s2s.windowing import window_count

    return window_count(math.ceil(seconds * REGNET.fps - 1e-6), SMALL_WINDOW, SMALL_OVERLAP)


def export_small_repository(path: Path, max_duration_s: float = 5.0, export=None, **limits) -> Path:
    """Export every model and the pipeline into ``path`` with short windows and no warm-up (``export``: the
    ExportOptions, a seeded small generator by default)."""
    from s2s.export.onnx_export import export_repository
    from s2s.export.specs import ExportOptions
    from s2s.export.triton_config import ServingOptions
    from s2s.video import VideoLimits
    from s2s.windowing import PreprocessOptions

    preprocess = PreprocessOptions(
        window_frames=SMALL_WINDOW,
        overlap_frames=SMALL_OVERLAP,
        limits=VideoLimits(max_duration_s=max_duration_s, **limits),
    )
    export_repository(
        path,
        export or ExportOptions(generator_config="small"),
        ServingOptions(warmup_frames=0, cpu_precision="fp32"),
        None,
        None,
        preprocess,
    )
    return path


def _postgres_binary(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them in /usr/lib/postgresql/<major>/bin, off the PATH."""
    import glob
    import shutil

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    path = found[-1] if found else shutil.which(name)
    if path is None:
        raise AssertionError(f"PostgreSQL's {name} is missing: `make setup` installs Debian's postgresql")
    return path


class Postgres:
    """A throw-away PostgreSQL server (Debian's) on a free loopback port, with a database ``s2s``.

    Run as the ``postgres`` user when the tests run as root (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        import shutil
        import tempfile

        (self.port,) = free_ports(1)
        self.dir = Path(tempfile.mkdtemp(prefix="s2s-postgres-"))  # in /tmp: the postgres user must reach it
        self.data = self.dir / "data"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(_postgres_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        self.resume()
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE s2s")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/s2s"

    def database(self) -> str:
        """The URL of a new, empty database of this server."""
        import secrets

        import psycopg

        name = f"s2s_{secrets.token_hex(4)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def _run(self, *cmd: str) -> None:
        result = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{cmd[0]} failed: {result.stdout}{result.stderr}"

    def pause(self) -> None:
        """Stop the server (its data stays); :meth:`resume` starts it again on the same port."""
        self._run(_postgres_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_postgres_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        import shutil

        self.pause()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    server = Postgres()
    yield server
    server.stop()
