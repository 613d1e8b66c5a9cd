"""``s2s gateway``: the HTTP gateway and web page in front of Triton; ``s2s gateway-key``: an API key for it."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from s2s.flags import add_flags, from_flags, parse_size, port
from s2s.gateway.app import GatewaySettings


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "gateway",
        help="run the HTTP gateway and web page in front of Triton",
        description="FastAPI service: upload a video (POST /v1/jobs), follow its progress, download the video with "
        "sound; a web page at /, OpenAPI docs at /docs, Prometheus metrics at /metrics. Talks to Triton over gRPC. "
        "Every route but the health checks, the page and the docs needs an API key (--api-keys), unless --no-auth.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=port, default=8080, help="port to listen on (default: %(default)s)")
    add_flags(p, GatewaySettings)
    p.set_defaults(func=run_gateway)

    k = commands.add_parser(
        "gateway-key",
        help="make an API key for the gateway",
        description="Print a new random API key (give it to its user: it is shown once and stored nowhere) and "
        "its line for the gateway's keys file, or append the line to --keys-file. The running gateway picks the "
        "new line up without a restart; delete a line to revoke its key.",
    )
    k.add_argument("id", help="the key's id: who holds it (letters, digits, . _ @ -); logs and jobs name it")
    k.add_argument("--keys-file", type=Path, help="append the line to this file (created, mode 0600, if missing)")
    k.add_argument("--jobs", type=int, help="unfinished jobs at once for this key (default: the gateway's --key-jobs)")
    k.add_argument("--rate", type=float, help="new jobs per minute for this key (default: the gateway's --key-rate)")
    k.add_argument("--disk", type=parse_size, help="stored uploads and results (default: the gateway's --key-disk)")
    k.set_defaults(func=run_gateway_key)


def run_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from s2s.gateway.app import create_app

    settings = from_flags(GatewaySettings, args)
    app = create_app(settings)  # refuses to start without keys or --no-auth
    if settings.no_auth and not _loopback(args.host):
        print(f"warning: --no-auth on {args.host}: anyone who reaches this port can use the models and read every "
              "job; use API keys beyond this machine", file=sys.stderr)  # fmt: skip
    auth = "no authentication" if settings.no_auth else f"API keys from {settings.api_keys}"
    if settings.store:
        from s2s.gateway.pgstore import describe

        store = f"jobs in {describe(settings.store)}"
    else:
        store = "jobs in the folder"
    print(f"s2s gateway on http://{args.host}:{args.port} (Triton {settings.triton_url}, data {settings.data_dir}, "
          f"{store}, {auth})")  # fmt: skip
    # on SIGTERM: open requests get up to --drain seconds, then the windows in flight as much (lifespan)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=int(settings.drain_s))
    return 0


def run_gateway_key(args: argparse.Namespace) -> int:
    from s2s.gateway.auth import UNBOUNDED, KeyFileError, key_line, new_key, parse_keys

    key = new_key()
    line = key_line(args.id, key, jobs=args.jobs, rate=args.rate, disk=args.disk)
    if args.keys_file is None:
        print(key)
        print(f"keys-file line: {line}", file=sys.stderr)
        return 0
    existing = args.keys_file.read_text(encoding="utf-8") if args.keys_file.exists() else ""
    ids = {c.id for c in parse_keys(existing, UNBOUNDED, str(args.keys_file)).values()}
    if args.id in ids:
        raise KeyFileError(f"{args.keys_file} already has a key {args.id!r}: remove its line first, or pick another id")
    fd = os.open(args.keys_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(("" if not existing or existing.endswith("\n") else "\n") + line + "\n")
    print(key)
    print(f"added {args.id!r} to {args.keys_file}", file=sys.stderr)
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
