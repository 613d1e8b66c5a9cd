"""The ``s2s`` command line: one entry point, one subcommand per job.

s2s serve    run Triton on the model repository (embedded CPU server from the pytriton wheel)
s2s doctor   check the serving stack end to end on a throw-away model
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from pathlib import Path

from s2s import __version__

log = logging.getLogger("s2s")

DEFAULT_REPOSITORY = Path(os.environ.get("S2S_MODEL_REPOSITORY", "model_repository"))
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)i?[bB]?\s*$")


def parse_size(text: str) -> int:
    """'64M', '1G', '1048576' -> bytes."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 16M, 1G or a byte count)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " KMG".index(unit.upper() or " "))


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


# --------------------------------------------------------------------------------------------- serve
def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run Triton Inference Server on the model repository",
        description="Start the Triton Inference Server carried by the nvidia-pytriton wheel on a model "
        "repository, with the Python-based onnxruntime backend prepared, and wait until it is ready. "
        "Arguments after `--` go to tritonserver unchanged.",
    )
    p.add_argument(
        "--model-repository",
        type=Path,
        default=DEFAULT_REPOSITORY,
        help="model repository folder (default: %(default)s, or $S2S_MODEL_REPOSITORY)",
    )
    p.add_argument("--http-port", type=_port, default=8000, help="HTTP/REST port (default: %(default)s)")
    p.add_argument("--grpc-port", type=_port, default=8001, help="gRPC port (default: %(default)s)")
    p.add_argument("--metrics-port", type=_port, default=8002, help="Prometheus metrics port (default: %(default)s)")
    p.add_argument("--address", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    p.add_argument(
        "--shm-size",
        type=parse_size,
        default="16M",
        help="Python-backend shared memory per stub, e.g. 64M (default: %(default)s)",
    )
    p.add_argument(
        "--log-level",
        choices=["error", "warning", "info", "verbose"],
        default="info",
        help="server log level (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="load only these models (repeatable; default: every model in the repository)",
    )
    p.add_argument(
        "--exit-timeout",
        type=int,
        default=30,
        help="seconds to let in-flight requests finish on shutdown (default: %(default)s)",
    )
    p.add_argument(
        "--startup-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for readiness (default: %(default)s)",
    )
    p.add_argument("triton_args", nargs="*", help="extra tritonserver arguments (after --)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from s2s.runtime.embedded import EmbeddedTritonNotFoundError
    from s2s.runtime.server import ServerOptions, ServerStartError, TritonServer

    options = ServerOptions(
        model_repository=args.model_repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        address=args.address,
        shm_default_byte_size=args.shm_size,
        log_level=args.log_level,
        exit_timeout_s=args.exit_timeout,
        model_control_mode="explicit" if args.model else "none",
        load_models=args.model,
        extra_args=args.triton_args,
    )
    server = TritonServer(options, echo=sys.stderr)
    stopping = {"signal": None}

    def forward(signum: int, _frame: object) -> None:
        stopping["signal"] = signum
        server.send_signal(signum)

    # Forward SIGINT/SIGTERM to the server, also while it is still loading models.
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start(timeout_s=args.startup_timeout)
        except ServerStartError as exc:
            if stopping["signal"] is not None:
                log.info("stopped by signal %d before the server was ready", stopping["signal"])
                return 128 + stopping["signal"]
            log.error("%s", exc)
            return 1
        except EmbeddedTritonNotFoundError as exc:
            log.error("%s", exc)
            return 1
        print(
            f"s2s: Triton is ready (pid {server.pid}) serving {options.model_repository.resolve()}\n"
            f"  HTTP    http://{options.http_url}\n"
            f"  gRPC    {options.grpc_url}\n"
            f"  metrics {options.metrics_url}\n"
            "  Ctrl-C to stop",
            flush=True,
        )
        code = server.wait()
        return 0 if stopping["signal"] is not None and code == 0 else (code or 0)
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


# -------------------------------------------------------------------------------------------- doctor
def add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check the serving stack end to end",
        description="Start the embedded Triton on a throw-away repository with a tiny ONNX model under "
        'backend "onnxruntime", infer over HTTP and gRPC, and check that dynamic batching batches.',
    )
    p.add_argument("--concurrency", type=int, default=8, help="concurrent requests (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="show the server log")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from s2s.runtime.selfcheck import run_selfcheck

    result = run_selfcheck(concurrency=args.concurrency, echo=sys.stderr if args.verbose else None)
    print(f"Triton server {result.server_version} (embedded) with the Python-based onnxruntime backend")
    print(f"  HTTP inference     {'ok' if result.http_ok else 'WRONG RESULT'}")
    print(f"  gRPC inference     {'ok' if result.grpc_ok else 'WRONG RESULT'}")
    print(
        f"  dynamic batching   {result.inference_count} inferences in {result.execution_count} executions "
        f"({'batched' if result.batched else 'NOT batched'})"
    )
    return 0 if (result.http_ok and result.grpc_ok and result.batched) else 1


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s", description="Silence to Sound on Triton Inference Server.")
    parser.add_argument("--version", action="version", version=f"s2s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve(sub)
    add_doctor(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
