"""``s2s bench``: networks, flow, pipeline (end to end), gpu (the GPU path), burst (memory under load), balance
(one vs two Triton servers behind the gateway), perf (perf_analyzer) and analyze (Model Analyzer); results under
--output."""

from __future__ import annotations

import argparse
from pathlib import Path

from s2s.bench.analyze import AnalyzeOptions
from s2s.bench.harness import HarnessOptions
from s2s.constants import REGNET
from s2s.flags import add_flags, comma_list, from_flags
from s2s.repository import MODEL_NAMES, add_repository_flag


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("bench", help="benchmarks", description="Benchmarks; results land under --output.")
    kinds = p.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    n = kinds.add_parser(
        "networks",
        help="each network per 10 s window: PyTorch eager vs ONNX Runtime on this CPU",
        description="Time every network on one 10 s window in PyTorch eager and in ONNX Runtime (same inputs, "
        "same threads), report medians as JSON and a Markdown table.",
    )
    n.add_argument("--output", type=Path, default=Path("runs/bench-networks"), help="folder (default: %(default)s)")
    n.add_argument("--models", type=comma_list(str), default=MODEL_NAMES, help="comma-separated subset (default: all)")
    n.add_argument("--repeats", type=int, default=3, help="timed runs per model and runtime (default: %(default)s)")
    n.add_argument("--threads", type=int, help="threads for both runtimes (default: all cores)")
    n.set_defaults(func=run_networks)

    f = kinds.add_parser(
        "flow",
        help="TV-L1 per window: OpenCV on the CPU vs PyTorch batched on each device",
        description="Time OpenCV's TV-L1 (pair by pair, all cores) against s2s's PyTorch TV-L1 (all pairs at once) on "
        "a generated clip's 340x256 frames, per device; report per pair, per 10 s window and the difference.",
    )
    f.add_argument("--output", type=Path, default=Path("runs/bench-flow"), help="folder (default: %(default)s)")
    f.add_argument(
        "--frames", type=int, default=16, help="consecutive frames, pairs = frames - 1 (default: %(default)s)"
    )
    f.add_argument(
        "--devices", type=comma_list(str), default=("cpu", "cuda"),
        help="torch devices; cuda is skipped without one (default: cpu,cuda)",
    )  # fmt: skip
    f.add_argument("--repeats", type=int, default=3, help="timed runs (default: %(default)s)")
    f.add_argument("--max-pairs", type=int, default=256, help="pairs solved at once (default: %(default)s)")
    f.set_defaults(func=run_flow)

    e = kinds.add_parser(
        "pipeline",
        help="end-to-end seconds per 10 s clip: the ensemble in Triton vs the same chain in-process",
        description="For each flow method, a generated 10 s clip through the `s2s` ensemble in the embedded Triton "
        "and through the same ONNX files in-process (ONNX Runtime), side by side; medians as JSON and Markdown.",
    )
    add_repository_flag(e, "exported model repository")
    e.add_argument("--output", type=Path, default=Path("runs/bench-pipeline"), help="folder (default: %(default)s)")
    e.add_argument(
        "--flow-methods", type=comma_list(str), default=("dis", "tvl1"), help="comma-separated (default: dis,tvl1)"
    )
    e.add_argument("--repeats", type=int, default=3, help="timed runs with dis (default: %(default)s)")
    e.add_argument("--tvl1-repeats", type=int, default=1, help="timed runs with tvl1 (over a minute each on CPU)")
    e.add_argument(
        "--clip-seconds", type=float, default=REGNET.window_s,
        help="clip length (default: one window, 10 s); a shorter clip also times the networks on every frame of "
        "its looped window, as before features were looped",
    )  # fmt: skip
    e.set_defaults(func=run_end_to_end)

    b = kinds.add_parser(
        "burst",
        help="Triton's memory and clips/s when several clips arrive at once",
        description="Start the embedded Triton on an exported repository, warm it up, then send bursts of clips at "
        "once (one burst per --concurrency value), sampling the RSS of the server and its stubs: idle, peak, and "
        "after the burst; JSON and Markdown.",
    )
    add_repository_flag(b, "exported model repository")
    b.add_argument("--output", type=Path, default=Path("runs/bench-burst"), help="folder (default: %(default)s)")
    b.add_argument("--concurrency", type=comma_list(int), default=(1, 2, 8), help="clips at once (default: 1,2,8)")
    b.add_argument("--clip-seconds", type=float, default=10.0, help="length of each clip (default: %(default)s)")
    b.set_defaults(func=run_burst)

    lb = kinds.add_parser(
        "balance",
        help="the gateway in front of one Triton server, then two: clips/s and each server's share",
        description="Start two embedded Triton servers on an exported repository; run the same jobs through the "
        "gateway at the same concurrency with one server, then with both (gRPC round_robin over an ipv4: address "
        "list); report clips/s, the 2-vs-1 ratio and the window requests each server answered. JSON and Markdown.",
    )
    add_repository_flag(lb, "exported model repository")
    lb.add_argument("--output", type=Path, default=Path("runs/bench-balance"), help="folder (default: %(default)s)")
    lb.add_argument("--jobs", type=int, default=8, help="jobs per setup (default: %(default)s)")
    lb.add_argument("--concurrency", type=int, default=4, help="jobs at once (default: %(default)s)")
    lb.add_argument("--clip-seconds", type=float, default=20.0, help="length of each clip (default: %(default)s)")
    lb.set_defaults(func=run_balance)

    g = kinds.add_parser(
        "gpu",
        help="the GPU path on a CUDA machine: TV-L1, each network, end to end, clips/s, with correctness checks",
        description="On one CUDA GPU: TV-L1 against the CPU (and OpenCV), each network in float32/TF32/float16/"
        "bfloat16 against the CPU, a short clip end to end against the all-CPU chain; then TV-L1 per 10 s window "
        "(its variants), each network per window at several windows per call, one 10 s clip end to end with its "
        "stages, and clips/s with several clips in flight. JSON and Markdown under --output.",
    )
    g.add_argument("--output", type=Path, default=Path("runs/bench-gpu"), help="folder (default: %(default)s)")
    g.add_argument("--device", default="cuda", help="torch device (default: %(default)s; cpu only to try it)")
    g.add_argument("--repeats", type=int, default=5, help="timed runs of everything (default: %(default)s)")
    g.add_argument(
        "--batches", type=comma_list(int), default=(1, 4, 16), help="windows per network call (default: 1,4,16)"
    )
    g.add_argument(
        "--in-flight", type=comma_list(int), default=(1, 4, 16),
        help="clips in flight for clips/s, and windows per TV-L1 batch (default: 1,4,16)",
    )  # fmt: skip
    g.add_argument("--clips", type=int, default=32, help="clips per clips/s measurement (default: %(default)s)")
    g.add_argument(
        "--sections", type=comma_list(str), default=("flow", "networks", "end_to_end"),
        help="parts to run (default: flow,networks,end_to_end)",
    )  # fmt: skip
    g.add_argument(
        "--window-frames", type=int, default=215, help="frames per window; fewer only to try the harness quickly"
    )
    g.set_defaults(func=run_gpu)

    h = kinds.add_parser(
        "perf",
        help="perf_analyzer on the ensemble and every model, with a report",
        description="Drive NVIDIA perf_analyzer against the embedded Triton (started on a temporary repository "
        "linking the exported models, with the instance counts and flow method given here) or a running server "
        "(--url). Scenarios: online (latency at fixed concurrencies), offline (max throughput), rate (latency at "
        "fixed request rates), models (each composing model alone). The same clip also runs in-process as a "
        "reference. Writes results.json/.csv, report.md and PNG plots under --output/<UTC time>/.",
    )
    add_flags(h, HarnessOptions)
    h.set_defaults(func=run_perf)

    a = kinds.add_parser(
        "analyze",
        help="Triton Model Analyzer: search instance counts and batch sizes of the ensemble's models",
        description="Run Triton Model Analyzer (quick search, local launch of the embedded server, CPU only) on the "
        "`s2s` ensemble: instance counts of every composing model and max batch sizes of the networks, each "
        "configuration measured with perf_analyzer on a generated clip. Writes Model Analyzer's config, logs and "
        "reports, results.json and report.md (the best configuration against the committed defaults) under "
        "--output/<UTC time>/.",
    )
    add_flags(a, AnalyzeOptions)
    a.set_defaults(func=run_analyze)


def run_networks(args: argparse.Namespace) -> int:
    from s2s.bench.networks import main

    return main(args.output, args.models, args.repeats, args.threads)


def run_flow(args: argparse.Namespace) -> int:
    from s2s.bench.flow import main

    return main(args.output, args.frames, args.devices, args.repeats, args.max_pairs)


def run_end_to_end(args: argparse.Namespace) -> int:
    from s2s.bench.end_to_end import main

    repeats = {"dis": args.repeats, "tvl1": args.tvl1_repeats}
    return main(args.model_repository, args.output, args.flow_methods, repeats, args.clip_seconds)


def run_gpu(args: argparse.Namespace) -> int:
    from s2s.bench.gpu import main

    return main(
        args.output, args.device, args.repeats, args.batches, args.in_flight, args.clips, args.sections,
        args.window_frames,
    )  # fmt: skip


def run_burst(args: argparse.Namespace) -> int:
    from s2s.bench.burst import main

    return main(args.model_repository, args.output, args.concurrency, args.clip_seconds)


def run_balance(args: argparse.Namespace) -> int:
    from s2s.bench.balance import main

    return main(args.model_repository, args.output, args.jobs, args.concurrency, args.clip_seconds)


def run_perf(args: argparse.Namespace) -> int:
    from s2s.bench.harness import run

    out = run(from_flags(HarnessOptions, args))
    print((out / "report.md").read_text())
    print(f"results: {out}")
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from s2s.bench.analyze import run

    out = run(from_flags(AnalyzeOptions, args))
    print((out / "report.md").read_text())
    print(f"results: {out}")
    return 0
