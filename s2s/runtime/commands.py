"""``s2s serve`` (Triton on a model repository) and ``s2s doctor`` (the serving stack, end to end)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path

from s2s.flags import add_flags, from_flags, is_given
from s2s.runtime.server import ADMIN_HEADER, ADMIN_KEY_ENV, ServerOptions

log = logging.getLogger(__name__)
#: the window over which `s2s serve --restarts` counts restarts
RESTART_WINDOW_S = 600.0


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="run Triton Inference Server on the model repository",
        description="Start the Triton Inference Server carried by the nvidia-pytriton wheel on a model "
        "repository, with the Python-based onnxruntime backend prepared, and wait until it is ready. "
        "Arguments after `--` go to tritonserver unchanged.",
    )
    add_flags(serve, ServerOptions)
    serve.set_defaults(func=run_serve)

    drain = commands.add_parser(
        "drain",
        help="let a running Triton finish its requests in flight before it is stopped",
        description="Unload the server's ensembles: new requests to them are refused at once, those in flight "
        "finish (their later steps still reach the composing models). Returns when they have, or after --timeout. "
        "For a Kubernetes preStop hook, before the SIGTERM that stops tritonserver; `s2s serve` does it by itself "
        "on the first Ctrl-C / SIGTERM.",
    )
    drain.add_argument("--url", default="localhost:8000", help="the server's HTTP address (default: %(default)s)")
    drain.add_argument("--timeout", type=float, default=30.0, help="seconds to wait at most (default: %(default)s)")
    drain.add_argument(
        "--admin-key-file", type=Path, help=f"file holding the server's admin key (default: ${ADMIN_KEY_ENV})"
    )
    drain.set_defaults(func=run_drain)

    doctor = commands.add_parser(
        "doctor",
        help="check the serving stack end to end",
        description="Start the embedded Triton on a throw-away repository with a tiny ONNX model under "
        'backend "onnxruntime", infer over HTTP and gRPC, and check that dynamic batching batches.',
    )
    doctor.add_argument("--concurrency", type=int, default=8, help="concurrent requests (default: %(default)s)")
    doctor.add_argument("--verbose", action="store_true", help="show the server log")
    doctor.add_argument(
        "--model-repository", type=Path, metavar="DIR",
        help="also serve this exported repository and chain one synthetic window through its networks",
    )  # fmt: skip
    doctor.add_argument("--frames", type=int, default=None, help="frames of that window (default: one full window)")
    doctor.add_argument(
        "--wav",
        type=Path,
        default=Path("outputs/doctor.wav"),
        help="where to write its waveform (default: %(default)s)",
    )
    doctor.set_defaults(func=run_doctor)


def run_serve(args: argparse.Namespace) -> int:
    from s2s.runtime.server import ServerStartError, TritonServer, drain_ensembles

    options = from_flags(ServerOptions, args)
    if is_given(args, ServerOptions, "admin_key") or os.environ.get(ADMIN_KEY_ENV):
        key_note = "the key you gave"
    else:
        key_note = f"a random key: give --admin-key-file or ${ADMIN_KEY_ENV} to use them"
    current = {"server": TritonServer(options, echo=sys.stderr), "signal": None}

    def forward(signum: int, _frame: object) -> None:
        """The first signal drains (new requests refused, those in flight finished), then stops the server;
        a second one stops it at once."""
        first = current["signal"] is None
        current["signal"] = signum
        # past this, a server still running is killed (one that hangs in its own shutdown must not stay)
        current["stop_by"] = time.monotonic() + (2 if first else 1) * options.exit_timeout_s + 15.0
        server = current["server"]
        if not first or server.pid is None or not server.ready_seen:
            server.send_signal(signum)
            return
        print("s2s: draining: new requests are refused, those in flight finish (again to stop at once)", flush=True)

        def drain_then_stop() -> None:
            drained = drain_ensembles(options.http_url, options.admin_headers("http"), options.exit_timeout_s)
            log.info("drained %s; stopping the server", ", ".join(drained) or "nothing")
            server.send_signal(signum)

        threading.Thread(target=drain_then_stop, name="drain", daemon=True).start()

    # Forward SIGINT/SIGTERM to the server, also while it is still loading models.
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    restarts: deque[float] = deque()
    try:
        while True:
            server = current["server"]
            try:
                server.start()
            except ServerStartError:
                if current["signal"] is not None:
                    log.info("stopped by signal %d before the server was ready", current["signal"])
                    return 128 + current["signal"]
                raise
            again = f", started again after it died ({len(restarts)} in 10 min)" if restarts else ""
            print(
                f"s2s: Triton is ready (pid {server.pid}) serving {options.model_repository.resolve()}{again}\n"
                f"  HTTP    http://{options.http_url}\n"
                f"  gRPC    {options.grpc_url}\n"
                f"  metrics {options.metrics_url}\n"
                f"  admin   {', '.join(options.admin_apis)}: header {ADMIN_HEADER} "
                f"({key_note})\n"
                "  Ctrl-C to stop",
                flush=True,
            )
            code = None
            while code is None:
                code = server.wait(timeout_s=1.0)
                if code is None and time.monotonic() > (current.get("stop_by") or float("inf")):
                    log.error("tritonserver did not stop in time after the signal; killing it")
                    return 1  # the finally below kills its process group
            if current["signal"] is not None:
                return 0 if code == 0 else code
            # died unasked (a crash, an out-of-memory kill): start it again, as Kubernetes restarts a pod
            server.stop()  # its stubs and shared memory go with it
            now = time.monotonic()
            while restarts and now - restarts[0] > RESTART_WINDOW_S:
                restarts.popleft()
            died = f"signal {-code}" if code < 0 else f"code {code}"
            if len(restarts) >= options.restarts:
                log.error("tritonserver died (%s); %d restarts in 10 minutes already: giving up", died, len(restarts))
                return code if code > 0 else 128 - code
            restarts.append(now)
            log.warning("tritonserver died (%s); starting it again", died)
            current["server"] = TritonServer(options, echo=sys.stderr)
    finally:
        current["server"].stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_drain(args: argparse.Namespace) -> int:
    from s2s.runtime.server import admin_headers, admin_key_from_environment, drain_ensembles, read_admin_key

    key = read_admin_key(str(args.admin_key_file)) if args.admin_key_file else admin_key_from_environment()
    began = time.monotonic()
    drained = drain_ensembles(args.url, admin_headers(key, "http"), args.timeout)
    print(f"drained {', '.join(drained) or 'nothing'} in {time.monotonic() - began:.1f} s")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    from s2s.constants import REGNET
    from s2s.runtime.selfcheck import run_repository_chain, run_selfcheck

    echo = sys.stderr if args.verbose else None
    result = run_selfcheck(concurrency=args.concurrency, echo=echo)
    print(f"Triton server {result.server_version} (embedded) with the Python-based onnxruntime backend")
    print(f"  HTTP inference     {'ok' if result.http_ok else 'WRONG RESULT'}")
    print(f"  gRPC inference     {'ok' if result.grpc_ok else 'WRONG RESULT'}")
    print(
        f"  dynamic batching   {result.inference_count} inferences in {result.execution_count} executions "
        f"({'batched' if result.batched else 'NOT batched'})"
    )
    ok = result.http_ok and result.grpc_ok and result.batched
    if ok and args.model_repository is not None:
        frames = args.frames or REGNET.frames_per_window
        chain = run_repository_chain(args.model_repository, frames, args.wav, echo=echo)
        print(f"Model repository {args.model_repository}: one synthetic window of {frames} frames")
        for model, seconds in chain.seconds.items():
            print(f"  {model:10s} {seconds:7.2f} s")
        print(f"  mel {chain.mel_shape} -> {chain.samples} samples ({chain.samples / REGNET.sample_rate:.2f} s audio)")
        print(f"  waveform written to {chain.wav_path}")
    return 0 if ok else 1
