"""``s2s gateway``: the HTTP gateway and web page in front of Triton."""

from __future__ import annotations

import argparse

from s2s.flags import add_flags, from_flags, port
from s2s.gateway.app import GatewaySettings


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "gateway",
        help="run the HTTP gateway and web page in front of Triton",
        description="FastAPI service: upload a video (POST /v1/jobs), follow its progress, download the video with "
        "sound; a web page at /, OpenAPI docs at /docs, Prometheus metrics at /metrics. Talks to Triton over gRPC.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=port, default=8080, help="port to listen on (default: %(default)s)")
    add_flags(p, GatewaySettings)
    p.set_defaults(func=run_gateway)


def run_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from s2s.gateway.app import create_app

    settings = from_flags(GatewaySettings, args)
    print(f"s2s gateway on http://{args.host}:{args.port} (Triton {settings.triton_url}, data {settings.data_dir})")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0
