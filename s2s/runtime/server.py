"""Start, watch and stop a Triton Inference Server process on a model repository.

:class:`TritonServer` launches the embedded ``tritonserver`` (see :mod:`s2s.runtime.embedded`) with a
freshly prepared backend directory, waits for ``/v2/health/ready``, keeps the server's log, and on
stop ends the server *and* every Python-backend stub it started (they share a process group that is
killed last). If the server dies while starting - a model failed to load, a port is taken - the
error lines of its own log are raised in :class:`ServerStartError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from s2s.errors import S2SError
from s2s.flags import flag, format_size, parse_size, port
from s2s.repository import repository_field
from s2s.runtime import embedded

log = logging.getLogger(__name__)

LOG_LEVELS = ("error", "warning", "info", "verbose")
_PR_SET_PDEATHSIG = 1
#: Python-backend shared memory per stub, default and growth step (bytes)
SHM_BYTES = 16 * 1024 * 1024

#: Triton APIs that only a request carrying the admin key reaches, over HTTP and gRPC alike: loading a
#: model from a request (model-repository), shared-memory registration, configs, statistics, trace and
#: log settings. Health, metadata and inference stay open.
ADMIN_APIS = ("shared-memory", "model-repository", "model-config", "statistics", "trace", "logging")
#: the HTTP header that carries the admin key; over gRPC, Triton expects it as metadata key
#: ``triton-grpc-protocol-s2s-admin-key`` (see :func:`admin_headers`)
ADMIN_HEADER = "s2s-admin-key"
#: where the admin key comes from when no --admin-key-file is given
ADMIN_KEY_ENV = "S2S_TRITON_ADMIN_KEY"
_KEY = re.compile(r"^[A-Za-z0-9_.~-]{16,256}$")
#: Public advisories fixed after Triton 2.51.0 (NGC 24.10), the release the pip wheel carries
EMBEDDED_CVES = "CVE-2025-23310, CVE-2025-23311, CVE-2025-23319, CVE-2025-23320, CVE-2025-23334"


def check_admin_key(key: str, source: str = "the admin key") -> str:
    """``key`` if it can be a Triton restricted-API value: 16 to 256 of ``A-Z a-z 0-9 _ . ~ -``."""
    if not _KEY.match(key):
        raise ServerConfigError(
            f"{source} must be 16 to 256 characters of A-Z, a-z, 0-9, '_', '.', '~' or '-' (got {len(key)} characters)"
        )
    return key


def read_admin_key(path: str) -> str:
    """The admin key in a file (a mounted Secret): its content without surrounding whitespace."""
    try:
        return check_admin_key(Path(path).read_text().strip(), f"admin key file {path}")
    except OSError as exc:
        raise ServerConfigError(f"cannot read the admin key file {path}: {exc.strerror}") from None


def admin_key_from_environment() -> str:
    """$S2S_TRITON_ADMIN_KEY, or a new random key: then only this process holds it."""
    key = os.environ.get(ADMIN_KEY_ENV)
    return check_admin_key(key, f"${ADMIN_KEY_ENV}") if key else secrets.token_urlsafe(32)


def admin_headers(key: str, protocol: str = "http") -> dict[str, str]:
    """Headers (HTTP) or metadata (gRPC: Triton prefixes restricted-protocol keys) that unlock the admin APIs."""
    return {ADMIN_HEADER if protocol == "http" else f"triton-grpc-protocol-{ADMIN_HEADER}": key}


def is_loopback(address: str) -> bool:
    """Whether ``address`` reaches this machine only (127.0.0.0/8, ::1, localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerConfigError(S2SError, ValueError):
    """Server options that cannot work (a malformed admin key, an unreadable key file)."""


class ServerStartError(S2SError, RuntimeError):
    """tritonserver exited or did not become ready; ``log_tail`` holds its last log lines."""

    def __init__(self, message: str, log_tail: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.log_tail = log_tail
        self.returncode = returncode


@dataclass
class ServerOptions:
    """Options of one server process (defaults: Triton's own ports, all interfaces)."""

    model_repository: Path = repository_field()
    http_port: int = flag(8000, "--http-port", "HTTP/REST port", type=port)
    grpc_port: int = flag(8001, "--grpc-port", "gRPC port", type=port)
    metrics_port: int = flag(8002, "--metrics-port", "Prometheus metrics port", type=port)
    address: str = flag(
        "127.0.0.1", "--address", "address to listen on; 0.0.0.0 for every interface (the embedded server is for "
        "local use: see the warning it prints)",
    )  # fmt: skip
    #: Python-backend shared memory region per stub (bytes); raise it for large tensors.
    shm_default_byte_size: int = flag(
        SHM_BYTES,
        "--shm-size",
        "Python-backend shared memory per stub, e.g. 64M",
        type=parse_size,
        shown=format_size(SHM_BYTES),
    )
    shm_growth_byte_size: int = SHM_BYTES
    log_level: str = flag("info", "--log-level", "server log level", choices=LOG_LEVELS)
    exit_timeout_s: int = flag(30, "--exit-timeout", "seconds to let in-flight requests finish on shutdown")
    startup_timeout_s: float = flag(600.0, "--startup-timeout", "seconds to wait for readiness")
    #: what `s2s serve` does when the server dies without being asked to (a crash, a kill)
    restarts: int = flag(
        5, "--restarts", "start a server that died unasked again, up to this many times in 10 minutes (0: exit with it)"
    )
    #: empty: every model in the repository, loaded at start; else only these (explicit model control)
    load_models: list[str] = flag(
        name="--model", help="load only these models (repeatable; default: every model in the repository)",
        default_factory=list, repeat=True,
    )  # fmt: skip
    extra_args: list[str] = flag(
        name="triton_args", help="extra tritonserver arguments (after --)", default_factory=list, nargs="*"
    )
    #: unlocks :data:`ADMIN_APIS` (header ``s2s-admin-key``); s2s's own tools send it
    admin_key: str = flag(
        name="--admin-key-file", help=f"file holding the key of Triton's admin APIs ({', '.join(ADMIN_APIS)}), sent "
        f"as header '{ADMIN_HEADER}'", type=read_admin_key, default_factory=admin_key_from_environment,
        shown=f"${ADMIN_KEY_ENV}, else a new random key at each start", secret=True,
    )  # fmt: skip
    admin_apis: tuple[str, ...] = ADMIN_APIS
    binary: Path | None = None
    backend_directory: Path | None = None
    #: None: detect. Without a GPU the pinned-memory pool and GPU metrics are switched off.
    gpu: bool | None = None

    def admin_headers(self, protocol: str = "http") -> dict[str, str]:
        """Headers (HTTP) or metadata (gRPC) that unlock the admin APIs of this server."""
        return admin_headers(self.admin_key, protocol)

    @property
    def model_control_mode(self) -> str:
        """Always "explicit": ``load_models`` at start (every model when empty, ``--load-model=*``), and a
        stopping server can unload its ensembles first (:func:`drain_ensembles`); the repository API that
        allows it needs the admin key."""
        return "explicit"

    @classmethod
    def local(cls, model_repository: Path, **overrides) -> ServerOptions:
        """A server for this process's own use: loopback only, on three ports free right now."""
        http_port, grpc_port, metrics_port = free_ports(3)
        settings = dict(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, address="127.0.0.1")
        return cls(Path(model_repository), **{**settings, **overrides})

    def command(self, binary: Path, backend_directory: Path) -> list[str]:
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log level {self.log_level!r} is not one of {LOG_LEVELS}")
        level = LOG_LEVELS.index(self.log_level)
        cmd = [
            str(binary),
            f"--model-repository={Path(self.model_repository).resolve()}",
            f"--backend-directory={backend_directory}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--http-address={self.address}",
            f"--grpc-address={self.address}",
            f"--metrics-address={self.address}",
            f"--backend-config=python,shm-default-byte-size={self.shm_default_byte_size}",
            f"--backend-config=python,shm-growth-byte-size={self.shm_growth_byte_size}",
            f"--log-warning={'true' if level >= 1 else 'false'}",
            f"--log-info={'true' if level >= 2 else 'false'}",
            f"--log-verbose={1 if level >= 3 else 0}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--model-control-mode={self.model_control_mode}",
        ]
        cmd += [f"--load-model={name}" for name in self.load_models or ["*"]]
        if self.admin_apis:
            restricted = f"{','.join(self.admin_apis)}:{ADMIN_HEADER}={check_admin_key(self.admin_key)}"
            cmd += [f"--http-restricted-api={restricted}", f"--grpc-restricted-protocol={restricted}"]
        if not (has_gpu() if self.gpu is None else self.gpu):
            cmd += ["--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false"]
        return cmd + list(self.extra_args)

    @property
    def http_url(self) -> str:
        return f"{_client_host(self.address)}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{_client_host(self.address)}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_client_host(self.address)}:{self.metrics_port}/metrics"


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on localhost right now."""
    sockets, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def has_gpu() -> bool:
    """Whether an NVIDIA GPU is visible to this machine (driver device nodes present)."""
    return Path("/dev/nvidia0").exists() or (Path("/dev/nvidiactl").exists() and any(Path("/dev").glob("nvidia[0-9]*")))


def _client_host(address: str) -> str:
    return "127.0.0.1" if address in ("0.0.0.0", "") else address


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # SIGTERM: the server then stops its stubs itself (SIGKILL would leave them running until they notice).
    # A server that hangs in its own shutdown is killed by a live launcher after a deadline (`s2s serve`)
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


#: Error lines a CPU-only machine always prints; they explain nothing.
_NOISE = (
    "CudaDriverHelper has not been initialized",
    "Failed to initialize NVML",
    "DCGM unable to start",
    "unable to create stream for",
)


def error_lines(log_text: str, limit: int = 20) -> str:
    """The lines of a Triton log that explain a failure (errors and the model status table)."""
    keep = []
    for line in log_text.splitlines():
        stripped = line.strip()
        if any(noise in stripped for noise in _NOISE):
            continue
        if (
            stripped.startswith(("E", "error:"))
            or "ERROR" in stripped
            or "UNAVAILABLE" in stripped
            or "failed" in stripped.lower()
            or "Traceback" in stripped
            or stripped.endswith("Error")
            or "Error:" in stripped
        ):
            keep.append(line)
    return "\n".join(keep[-limit:])


_BACKEND_DIR_PREFIX = "s2s-triton-backends-"


def _remove_stale_backend_dirs() -> None:
    """Remove backend dirs left by launchers that were killed (their pid is in the name)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_BACKEND_DIR_PREFIX}*"):
        try:
            pid = int(path.name[len(_BACKEND_DIR_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def live_processes() -> list[tuple[int, int, str]]:
    """(pid, process group, command line) of every process that is not a zombie (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # the command name may contain spaces/parentheses: fields after the last ')' are fixed
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if state != "Z":
            found.append((int(entry.name), pgrp, cmdline))
    return found


#: where the Python-based backends' stubs share tensors with the server (one region per stub, by UUID)
SHM_DIR = Path("/dev/shm")
_SHM_REGIONS = "triton_*_backend_shm_region_*"


def mapped_shm(pids: Iterable[int] | None = None) -> set[str]:
    """Names of the /dev/shm files that live processes (all, or ``pids``) map, from /proc/<pid>/maps."""
    names = set()
    paths = Path("/proc").glob("[0-9]*/maps") if pids is None else (Path(f"/proc/{pid}/maps") for pid in pids)
    for maps in paths:
        try:
            text = maps.read_text()
        except OSError:
            continue  # gone, or another user's
        for line in text.splitlines():
            at = line.find(f"{SHM_DIR}/")
            if at >= 0:
                names.add(line[at + len(str(SHM_DIR)) + 1 :].removesuffix(" (deleted)").strip())
    return names


def remove_orphan_shm(*, min_age_s: float, created_after: float | None = None) -> list[str]:
    """Unlink the backends' shared-memory regions that no live process maps: what a server that was
    killed (or whose stubs were) leaves in /dev/shm. Only regions older than ``min_age_s`` (one being
    created is mapped a moment later) and, if given, modified after ``created_after``; returns the names."""
    now, mapped, removed = time.time(), mapped_shm(), []
    for path in SHM_DIR.glob(_SHM_REGIONS):
        try:
            changed = path.stat().st_mtime
        except OSError:
            continue
        if path.name in mapped or now - changed < min_age_s or (created_after and changed < created_after):
            continue
        with contextlib.suppress(OSError):  # another user's, or gone meanwhile
            path.unlink()
            removed.append(path.name)
    return removed


def drain_ensembles(http_url: str, headers: dict[str, str], timeout_s: float) -> list[str]:
    """Let a server finish what it has started before it stops: unload its ensembles, which refuses new
    requests to them at once but completes the ones in flight, whose later steps still reach the composing
    models (a plain SIGTERM stops those models' schedulers, and in-flight ensembles fail half way with
    "Server is stopping"). ``headers`` carry the admin key (the repository API is an admin API). Returns
    the ensembles unloaded; waits at most ``timeout_s``."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    deadline = time.monotonic() + timeout_s
    client = httpclient.InferenceServerClient(http_url, connection_timeout=5.0, network_timeout=max(timeout_s, 5.0))
    try:
        ready = [m["name"] for m in client.get_model_repository_index(headers=headers) if m.get("state") == "READY"]
        ensembles = [n for n in ready if client.get_model_config(n, headers=headers).get("platform") == "ensemble"]
        for name in ensembles:
            client.unload_model(name, headers=headers)  # returns at once; the unload waits for in-flight requests
        while time.monotonic() < deadline:
            states = {m["name"]: m.get("state") for m in client.get_model_repository_index(headers=headers)}
            if all(states.get(name) != "READY" and states.get(name) != "UNLOADING" for name in ensembles):
                break
            time.sleep(0.2)
        else:
            log.warning("requests were still in flight after %.0f s of draining", timeout_s)
        return ensembles
    except (InferenceServerException, OSError) as exc:
        log.warning("could not drain the server (%s); stopping it anyway", exc)
        return []
    finally:
        client.close()


class TritonServer:
    """A running tritonserver; use as a context manager or call :meth:`start` / :meth:`stop`.

    Shared memory: at start, regions a killed server left are removed; at stop, the ones this server's
    stubs created and did not remove.

    ``echo`` (a text stream) receives the server's log lines as they come, e.g. ``sys.stderr``.
    """

    def __init__(self, options: ServerOptions, echo: IO[str] | None = None, log_lines: int = 2000) -> None:
        self.options = options
        self.echo = echo
        self.process: subprocess.Popen[bytes] | None = None
        self._log: deque[str] = deque(maxlen=log_lines)
        self._reader: threading.Thread | None = None
        self._tmpdir: Path | None = None
        self._started_at: float | None = None
        self.ready_seen = False  #: it was ready once (a drain can talk to it)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout_s: float | None = None) -> TritonServer:
        """Start the server and block until it is ready (``timeout_s`` or the options' startup timeout);
        raise :class:`ServerStartError` otherwise."""
        repo = Path(self.options.model_repository)
        if not repo.is_dir():
            raise ServerStartError(f"model repository not found: {repo}")
        triton = embedded.locate()
        binary = self.options.binary or triton.binary
        backend_dir = self.options.backend_directory
        if backend_dir is None:
            _remove_stale_backend_dirs()
            self._tmpdir = Path(tempfile.mkdtemp(prefix=f"{_BACKEND_DIR_PREFIX}{os.getpid()}-"))
            backend_dir = embedded.prepare_backend_dir(self._tmpdir, triton)
        cmd = self.options.command(binary, backend_dir)
        orphans = remove_orphan_shm(min_age_s=60.0)
        if orphans:
            log.info("removed %d shared-memory region(s) a stopped server left in %s", len(orphans), SHM_DIR)
        self._started_at = time.time()
        log.debug("starting %s", " ".join(cmd).replace(self.options.admin_key, "<admin key>"))
        if not is_loopback(self.options.address):
            log.warning(
                "the embedded Triton (2.51.0) listens on %s, beyond this machine: it is for local use. Public "
                "advisories fixed in later Triton releases (%s) affect it; its admin APIs need the admin key, but "
                "serve real traffic from the NGC image the Helm chart deploys (k8s/README.md)",
                self.options.address, EMBEDDED_CVES,
            )  # fmt: skip
        self.process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=embedded.server_environment(triton),
            start_new_session=True,  # own process group: stop() ends the stubs with the server
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._read_log, name="tritonserver-log", daemon=True)
        self._reader.start()
        try:
            self.wait_ready(self.options.startup_timeout_s if timeout_s is None else timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float) -> None:
        url = f"http://{self.options.http_url}/v2/health/ready"
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.process.poll() if self.process else -1
            if code is not None:
                self._join_reader()
                tail = self.log_text()
                raise ServerStartError(
                    f"tritonserver exited with code {code} while starting:\n{error_lines(tail) or tail[-4000:]}",
                    tail,
                    code,
                )
            with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    self.ready_seen = True
                    return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"tritonserver was not ready after {timeout_s:.0f} s:\n{error_lines(self.log_text())}",
                    self.log_text(),
                )
            time.sleep(0.2)

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM the server, wait for its graceful exit, then kill whatever is left of its group."""
        proc, code = self.process, None
        if proc is not None:
            timeout_s = self.options.exit_timeout_s + 10 if timeout_s is None else timeout_s
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("tritonserver did not stop within %.0f s; killing it", timeout_s)
            code = proc.poll()
            self._kill_group(proc.pid)
            if code is None:
                code = proc.wait()
            self._join_reader()
            if self._started_at is not None:  # the stubs are gone: what they left is nobody's
                remove_orphan_shm(min_age_s=2.0, created_after=self._started_at - 1.0)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        return code

    def send_signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Block until the server exits (its exit code), or ``timeout_s`` passes (None)."""
        assert self.process is not None, "server not started"
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    @staticmethod
    def _kill_group(pgid: int) -> None:
        """SIGKILL every process left in the server's process group (stubs included)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    # -- logs --------------------------------------------------------------------------------------
    def _read_log(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", errors="replace")
            self._log.append(line)
            if self.echo is not None:
                with contextlib.suppress(ValueError, OSError):
                    self.echo.write(line)
                    self.echo.flush()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)

    def log_text(self) -> str:
        return "".join(self._log)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
