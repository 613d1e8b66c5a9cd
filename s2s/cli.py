"""The ``s2s`` command line: one entry point that assembles the commands each layer owns.

    s2s serve, doctor          s2s.runtime.commands    Triton on a model repository; the stack, end to end
    s2s export                 s2s.export.commands     the networks into a model repository
    s2s train, eval            s2s.training.commands   the demo weights; their alignment score, served
    s2s generate, demo         s2s.client.commands     a video through Triton; the main job
    s2s gateway, gateway-key   s2s.gateway.commands    the HTTP gateway and web page; its API keys
    s2s bench ...              s2s.bench.commands      networks, flow, pipeline, burst, balance, perf

One error policy for all of them: the project's own errors (:class:`s2s.errors.S2SError`) and a file
that cannot be read or written end a command with ``s2s <command> failed: <message>`` and exit status
1, never a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from s2s import __version__
from s2s.errors import S2SError

log = logging.getLogger("s2s")

#: the modules that own the commands, in the order `s2s --help` lists them
COMMAND_MODULES = (
    "s2s.runtime.commands",
    "s2s.export.commands",
    "s2s.training.commands",
    "s2s.client.commands",
    "s2s.gateway.commands",
    "s2s.bench.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s", description="Silence to Sound on Triton Inference Server.")
    parser.add_argument("--version", action="version", version=f"s2s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    command = args.command + (f" {args.bench}" if args.command == "bench" else "")
    try:
        return args.func(args)
    except (S2SError, OSError) as exc:  # OSError: a file the user named is missing or unreadable, a disk is full
        log.error("s2s %s failed: %s", command, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
