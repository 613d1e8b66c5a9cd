"""The ``s2s`` command line: one entry point, one subcommand per job.

s2s serve    run Triton on the model repository (embedded CPU server from the pytriton wheel)
s2s doctor   check the serving stack end to end on a throw-away model
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
    p.add_argument(
        "--model-repository",
        type=Path,
        help="also serve this exported repository and chain one synthetic window through its networks",
    )
    p.add_argument("--frames", type=int, default=None, help="frames of that window (default: one full window)")
    p.add_argument("--wav", type=Path, default=Path("outputs/doctor.wav"), help="where to write its waveform")
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
    ok = result.http_ok and result.grpc_ok and result.batched
    if ok and args.model_repository is not None:
        from s2s.constants import REGNET
        from s2s.runtime.selfcheck import run_repository_chain

        frames = args.frames or REGNET.frames_per_window
        chain = run_repository_chain(args.model_repository, frames, args.wav, echo=sys.stderr if args.verbose else None)
        print(f"Model repository {args.model_repository}: one synthetic window of {frames} frames")
        for model, seconds in chain.seconds.items():
            print(f"  {model:10s} {seconds:7.2f} s")
        print(f"  mel {chain.mel_shape} -> {chain.samples} samples ({chain.samples / REGNET.sample_rate:.2f} s audio)")
        print(f"  waveform written to {chain.wav_path}")
    return 0 if ok else 1


# -------------------------------------------------------------------------------------------- export
def add_export(sub: argparse._SubParsersAction) -> None:
    from s2s.export.layout import MODEL_NAMES, VOCODERS
    from s2s.export.tensorrt import TensorRTProfile
    from s2s.export.triton_config import PipelineOptions, ServingOptions

    serving, trt = ServingOptions(), TensorRTProfile()
    p = sub.add_parser(
        "export",
        help="export the networks into the model repository",
        description="Build each network (from a checkpoint, or seeded random weights that make noise), export it "
        "to ONNX (or a TensorRT plan) under <repository>/<model>/1/, write its config.pbtxt and record the "
        "source of every artifact in <repository>/manifest.json.",
    )
    p.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY, help="target (default: %(default)s)")
    p.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated subset (default: %(default)s)")
    p.add_argument("--rgb-checkpoint", type=Path, help="ImageNet BN-Inception state dict for the RGB encoder")
    p.add_argument("--flow-checkpoint", type=Path, help="BN-Inception state dict for the flow encoder")
    p.add_argument("--generator-checkpoint", type=Path, help="RegNet checkpoint_XXXXXX_netG")
    p.add_argument("--generator-config", default="reference", help="RegNet configuration (default: %(default)s)")
    p.add_argument("--vocoder", choices=VOCODERS, default="melgan", help="vocoder network (default: %(default)s)")
    p.add_argument("--vocoder-checkpoint", type=Path, help="MelGAN best_netG.pt or HiFi-GAN g_XXXXXXXX")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights where no checkpoint is given")
    p.add_argument(
        "--weights",
        choices=["demo", "seeded"],
        default="demo",
        help="where no checkpoint is given: demo = the package's trained demo generator and vocoder (made by "
        "`s2s train` on generated clips, paired with the seeded encoders), seeded = random weights, i.e. noise "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--format",
        choices=["onnx", "tensorrt"],
        default="onnx",
        help="onnx (backend onnxruntime) or tensorrt (FP16 plans, needs a GPU) (default: %(default)s)",
    )
    p.add_argument(
        "--max-windows",
        type=int,
        default=serving.max_windows,
        help="max_batch_size: most 10 s windows per execution (default: %(default)s)",
    )
    p.add_argument(
        "--instances", type=int, default=serving.instances, help="instances per model (default: %(default)s)"
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=serving.max_queue_delay_us,
        help="dynamic batching delay in microseconds (default: %(default)s)",
    )
    p.add_argument(
        "--warmup-frames",
        type=int,
        default=serving.warmup_frames,
        help="frames of a warm-up request at model load, 0 for none (default: %(default)s)",
    )
    pipe = PipelineOptions()
    p.add_argument(
        "--flow-method",
        choices=["dis", "tvl1"],
        default=pipe.flow_method,
        help="optical flow: dis (fast, CPU default) or tvl1 (RegNet's reference) (default: %(default)s)",
    )
    p.add_argument(
        "--window-frames",
        type=int,
        default=pipe.window_frames,
        help="frames per window, 215 = 10 s at 21.5 fps (default: %(default)s)",
    )
    p.add_argument(
        "--preprocess-instances",
        type=int,
        default=pipe.preprocess_instances,
        help="preprocess instances = videos decoded at once (default: %(default)s)",
    )
    p.add_argument(
        "--opencv-threads",
        type=int,
        default=pipe.opencv_threads,
        help="OpenCV threads per preprocess instance (default: %(default)s)",
    )
    p.add_argument(
        "--noise-seed",
        type=int,
        default=pipe.seed,
        help="seed mixed with each video's hash for its noise z (default: %(default)s)",
    )
    p.add_argument(
        "--max-duration",
        type=float,
        default=pipe.limits.max_duration_s,
        help="longest video accepted, seconds (default: %(default)s)",
    )
    p.add_argument(
        "--max-bytes",
        type=int,
        default=pipe.limits.max_bytes,
        help="largest video file accepted (default: %(default)s)",
    )
    p.add_argument("--max-width", type=int, default=pipe.limits.max_width, help="widest frame (default: %(default)s)")
    p.add_argument(
        "--max-height", type=int, default=pipe.limits.max_height, help="tallest frame (default: %(default)s)"
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=pipe.limits.max_pixels,
        help="most pixels per frame, width x height (default: %(default)s = 4K UHD)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "gpu"],
        default=serving.device,
        help="auto: instances on a GPU where there is one, else CPU (loads anywhere); gpu: networks KIND_GPU and, "
        "with --flow-method tvl1, preprocess on the GPU (PyTorch TV-L1, outputs stay in GPU memory); needs a GPU "
        "and torch with CUDA in the server's Python (default: %(default)s)",
    )
    p.add_argument(
        "--trt-accelerator",
        action="store_true",
        help="add the ONNX Runtime TensorRT FP16 execution accelerator to the onnxruntime configs (GPU)",
    )
    for flag, default, text in (
        ("--trt-min-windows", trt.min_windows, "smallest batch of windows"),
        ("--trt-opt-windows", trt.opt_windows, "batch of windows to optimise for"),
        ("--trt-min-frames", trt.min_frames, "fewest frames per window"),
        ("--trt-opt-frames", trt.opt_frames, "frames per window to optimise for"),
        ("--trt-max-frames", trt.max_frames, "most frames per window"),
    ):
        p.add_argument(flag, type=int, default=default, help=f"TensorRT profile: {text} (default: %(default)s)")
    p.add_argument(
        "--trt-cache",
        type=Path,
        help="persistent cache of TensorRT engines: plans (--format tensorrt) and the accelerator's engines "
        "(--trt-accelerator) go to DIR/<gpu>-sm<capability>-trt<version>/ and are reused when present (GPU)",
    )
    p.add_argument(
        "--trt-workspace-gib",
        type=float,
        default=trt.workspace_gib,
        help="TensorRT builder workspace (default: %(default)s)",
    )
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from s2s.export.onnx_export import export_repository
    from s2s.export.specs import ExportOptions
    from s2s.export.tensorrt import TensorRTProfile
    from s2s.export.triton_config import PipelineOptions, ServingOptions
    from s2s.models.checkpoints import CheckpointError
    from s2s.video import VideoLimits

    names = tuple(n.strip() for n in args.models.split(",") if n.strip())
    options = ExportOptions(
        rgb_checkpoint=args.rgb_checkpoint, flow_checkpoint=args.flow_checkpoint,
        generator_checkpoint=args.generator_checkpoint, generator_config=args.generator_config,
        vocoder=args.vocoder, vocoder_checkpoint=args.vocoder_checkpoint, seed=args.seed,
    )  # fmt: skip
    if args.weights == "demo":
        options = options.with_demo_weights()
    serving = ServingOptions(
        max_windows=args.max_windows, max_queue_delay_us=args.max_queue_delay_us, instances=args.instances,
        warmup_frames=args.warmup_frames, trt_accelerator=args.trt_accelerator, format=args.format,
        device=args.device,
    )  # fmt: skip
    profile = TensorRTProfile(
        min_windows=args.trt_min_windows, opt_windows=args.trt_opt_windows, max_windows=args.max_windows,
        min_frames=args.trt_min_frames, opt_frames=args.trt_opt_frames, max_frames=args.trt_max_frames,
        workspace_gib=args.trt_workspace_gib,
    )  # fmt: skip
    limits = VideoLimits(
        max_bytes=args.max_bytes, max_duration_s=args.max_duration, max_width=args.max_width,
        max_height=args.max_height, max_pixels=args.max_pixels,
    )  # fmt: skip
    pipeline = PipelineOptions(
        flow_method=args.flow_method, window_frames=args.window_frames,
        preprocess_instances=args.preprocess_instances, opencv_threads=args.opencv_threads,
        seed=args.noise_seed, limits=limits,
    )  # fmt: skip
    try:
        trt_cache = None
        if args.trt_cache is not None and (args.trt_accelerator or args.format == "tensorrt"):
            from s2s.export.tensorrt import local_device_key

            trt_cache = args.trt_cache / local_device_key()
            trt_cache.mkdir(parents=True, exist_ok=True)
            log.info("TensorRT cache for this GPU: %s", trt_cache)
            if args.trt_accelerator:
                serving = dataclasses.replace(serving, trt_cache_path=str(trt_cache.resolve()))
        elif args.trt_cache is not None:
            log.warning("--trt-cache ignored: nothing uses TensorRT (add --trt-accelerator or --format tensorrt)")
        manifest = export_repository(
            args.model_repository, options, serving, names, profile, pipeline,
            trt_cache if args.format == "tensorrt" else None,
        )  # fmt: skip
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:
        log.error("export failed: %s", exc)
        return 1
    for name in names:
        entry = manifest["models"][name]
        source = entry["source"]
        if entry["noise_weights"]:
            weights = "NOISE (seeded random weights)"
        elif "checkpoint" in source:
            weights = source["checkpoint"]
        else:
            weights = f"seed {source['seed']} (the encoders the generator was trained on)"
        print(f"{name:10s} {entry['file']:28s} {entry['bytes'] / 1e6:8.1f} MB  weights: {weights}")
    print(f"manifest: {args.model_repository / 'manifest.json'}")
    return 0


# --------------------------------------------------------------------------------------------- train
def add_train(sub: argparse._SubParsersAction) -> None:
    from s2s.train import TrainOptions

    d = TrainOptions()
    p = sub.add_parser(
        "train",
        help="train the demo generator and vocoder on generated clips (CPU, resumable)",
        description="Generate clips where visible events make sounds (s2s.synth), extract TSN features with the "
        "seeded encoders, train a RegNet generator and a MelGAN vocoder. Stages are resumable; run it again "
        "to continue. --install copies the result into the package as the default demo weights.",
    )
    p.add_argument("--output", type=Path, default=d.output, help="(default: %(default)s)")
    for flag, value, text in (
        ("--clips", d.clips, "training clips"),
        ("--generator-steps", d.generator_steps, "generator optimisation steps"),
        ("--vocoder-steps", d.vocoder_steps, "vocoder optimisation steps"),
        ("--batch", d.batch, "batch size"),
        ("--window-frames", d.window_frames, "frames per generator training window"),
        ("--checkpoint-every", d.checkpoint_every, "steps between checkpoints"),
        ("--first-seed", d.first_seed, "seed of the first training clip"),
    ):
        p.add_argument(flag, type=int, default=value, help=f"{text} (default: %(default)s)")
    p.add_argument("--clip-seconds", type=float, default=d.clip_seconds, help="(default: %(default)s)")
    p.add_argument("--generator-config", default=d.generator_config, help="RegNet configuration (default: %(default)s)")
    p.add_argument("--stages", default="data,generator,vocoder", help="(default: %(default)s)")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--install", action="store_true", help="copy the final weights into s2s/weights/ (float16)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from s2s.train import TrainOptions, train

    if args.threads:
        torch.set_num_threads(args.threads)
    options = TrainOptions(
        output=args.output, clips=args.clips, clip_seconds=args.clip_seconds, first_seed=args.first_seed,
        generator_config=args.generator_config, window_frames=args.window_frames, batch=args.batch,
        generator_steps=args.generator_steps, vocoder_steps=args.vocoder_steps, checkpoint_every=args.checkpoint_every,
    )  # fmt: skip
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    result = train(options, stages, install=args.install)
    print(json.dumps(result, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- eval
def add_eval(sub: argparse._SubParsersAction) -> None:
    from s2s.evaluate import EvalOptions

    d = EvalOptions()
    p = sub.add_parser(
        "eval",
        help="alignment score through the Triton ensemble: trained vs untrained weights on held-out clips",
        description="Generate held-out clips with known impact times, send them through the s2s ensemble of the "
        "embedded Triton (trained weights, then untrained ones), score onset accuracy, onset AP (+-0.1 s) and "
        "energy-envelope correlation.",
    )
    p.add_argument("--output", type=Path, default=d.output, help="(default: %(default)s)")
    p.add_argument("--clips", type=int, default=d.clips, help="held-out clips (default: %(default)s)")
    p.add_argument("--clip-seconds", type=float, default=d.clip_seconds, help="(default: %(default)s)")
    p.add_argument("--first-seed", type=int, default=d.first_seed, help="(default: %(default)s)")
    p.add_argument("--flow-method", choices=["dis", "tvl1"], default=d.flow_method, help="(default: %(default)s)")
    p.add_argument("--generator-checkpoint", type=Path, help="trained generator (default: the demo weights)")
    p.add_argument("--vocoder-checkpoint", type=Path, help="trained MelGAN (default: the demo weights)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from s2s.evaluate import EvalOptions, evaluate, report

    options = EvalOptions(
        output=args.output, clips=args.clips, clip_seconds=args.clip_seconds, first_seed=args.first_seed,
        flow_method=args.flow_method, generator_checkpoint=args.generator_checkpoint,
        vocoder_checkpoint=args.vocoder_checkpoint,
    )  # fmt: skip
    try:
        results = evaluate(options)
    except (FileNotFoundError, ValueError) as exc:
        log.error("eval failed: %s", exc)
        return 1
    print(report(results))
    print(f"results: {options.output}")
    return 0


# ------------------------------------------------------------------------------------------ generate
def add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="turn a silent video into a video with sound, through a running Triton",
        description="Send the video file to the `s2s` ensemble (gRPC by default), receive the waveform, and write "
        "a copy of the video with it as the only audio track (video stream copied, not re-encoded).",
    )
    p.add_argument("input", type=Path, help="video file (mp4, webm, avi, mov, mkv, ...)")
    p.add_argument("-o", "--output", type=Path, help="video with sound (.mp4, .mov, .mkv or .webm)")
    p.add_argument("--wav", type=Path, help="also write the waveform as a WAV file")
    p.add_argument("--url", help="Triton address (default: localhost:8001 for gRPC, localhost:8000 for HTTP)")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc", help="(default: %(default)s)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the result (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--windows-per-request",
        type=int,
        default=0,
        help="send N windows (10 s each) per request and show progress per window; 0: the whole video "
        "in one request (default)",
    )
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from s2s.client.generate import generate_file
    from s2s.client.triton import ClientError

    if args.output is None and args.wav is None:
        log.error("nothing to write: give -o OUT.mp4 and/or --wav OUT.wav")
        return 2
    if not args.input.is_file():
        log.error("no such file: %s", args.input)
        return 2
    try:
        result = generate_file(
            args.input, args.output, wav=args.wav, url=args.url, protocol=args.protocol,
            timeout_s=args.timeout, show_progress=not args.quiet, chunk_windows=args.windows_per_request,
        )  # fmt: skip
    except ClientError as exc:
        log.error("generation failed: %s", exc)
        return 1
    if result.muxed is not None:
        how = "video copied" if result.muxed.video_copied else "video re-encoded"
        print(f"video with sound: {result.muxed.path} ({how})")
    if result.wav is not None:
        print(f"waveform: {result.wav}")
    return 0


# ------------------------------------------------------------------------------------------- gateway
def add_gateway(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gateway",
        help="run the HTTP gateway and web page in front of Triton",
        description="FastAPI service: upload a video (POST /v1/jobs), follow its progress, download the video with "
        "sound; a web page at /, OpenAPI docs at /docs, Prometheus metrics at /metrics. Talks to Triton over gRPC.",
    )
    p.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="(default: %(default)s)")
    p.add_argument(
        "--triton-url", default=None, help="Triton gRPC address (default: $S2S_TRITON_URL or localhost:8001)"
    )
    p.add_argument(
        "--data-dir", type=Path, default=None, help="jobs and results (default: $S2S_GATEWAY_DATA or ./gateway-data)"
    )
    p.add_argument("--max-upload", type=parse_size, default="256M", help="largest upload (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="jobs processed at once (default: %(default)s)")
    p.add_argument(
        "--max-queued", type=int, default=8, help="jobs waiting beyond those; more get 429 (default: %(default)s)"
    )
    p.add_argument(
        "--windows-per-request", type=int, default=1, help="windows per Triton request (default: %(default)s)"
    )
    p.add_argument("--result-ttl", type=float, default=24.0, help="hours results are kept (default: %(default)s)")
    p.set_defaults(func=cmd_gateway)


def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from s2s.gateway.app import GatewaySettings, create_app

    settings = GatewaySettings(
        max_upload_bytes=args.max_upload, workers=args.workers, max_queued=args.max_queued,
        windows_per_request=args.windows_per_request, result_ttl_s=args.result_ttl * 3600,
    )  # fmt: skip
    if args.triton_url:
        settings.triton_url = args.triton_url
    if args.data_dir:
        settings.data_dir = args.data_dir
    print(f"s2s gateway on http://{args.host}:{args.port} (Triton {settings.triton_url}, data {settings.data_dir})")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


# ---------------------------------------------------------------------------------------------- demo
def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: a generated sample video through the embedded Triton, with sound",
        description="Generate a sample video with visible motion, start the embedded Triton on the exported "
        "model repository, send the video through the `s2s` ensemble over gRPC and write the video with sound.",
    )
    p.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY, help="(default: %(default)s)")
    p.add_argument("--output-dir", type=Path, default=Path("outputs"), help="(default: %(default)s)")
    p.add_argument("--duration", type=float, default=6.0, help="sample video length, seconds (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="show the server log")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from s2s.client.generate import generate_file
    from s2s.client.triton import ClientError
    from s2s.runtime.server import ServerOptions, ServerStartError, TritonServer
    from s2s.synth import DEMO_SEED, encode_clip, make_clip

    repo = args.model_repository
    if not (repo / "s2s" / "config.pbtxt").is_file() or not (repo / "manifest.json").is_file():
        log.error("%s is not an exported repository: run `s2s export --model-repository %s` first", repo, repo)
        return 1
    args.output_dir.mkdir(parents=True, exist_ok=True)
    sample = args.output_dir / "sample.mp4"
    clip = make_clip(DEMO_SEED, args.duration, kinds=("bounce", "strike"))  # a held-out seed: never trained on
    encode_clip(clip, sample)
    import soundfile

    soundfile.write(args.output_dir / "sample_reference.wav", clip.audio, clip.sample_rate)
    print(f"sample video (silent, {args.duration:g} s, {len(clip.onsets)} impacts): {sample}")
    options = ServerOptions.local(repo, shm_default_byte_size=64 * 1024 * 1024, log_level="warning", exit_timeout_s=10)
    print(f"starting the embedded Triton on {repo} (models load and warm up) ...", flush=True)
    try:
        with TritonServer(options, echo=sys.stderr if args.verbose else None):
            print(f"Triton ready: gRPC {options.grpc_url}, HTTP {options.http_url}", flush=True)
            output = args.output_dir / "sample_with_sound.mp4"
            result = generate_file(sample, output, wav=args.output_dir / "sample_with_sound.wav", url=options.grpc_url)
    except (ServerStartError, ClientError) as exc:
        log.error("%s", exc)
        return 1
    print(f"video with sound: {result.muxed.path}")
    print(f"waveform:         {result.wav}  (the clip's own sound: {args.output_dir / 'sample_reference.wav'})")
    from s2s.alignment import envelope_correlation, onset_scores

    generated, rate = soundfile.read(result.wav, dtype="float32")
    scores = onset_scores(generated, rate, clip.onsets)
    print(
        f"alignment with the {scores.truth} impacts on screen: onset accuracy {scores.accuracy:.2f}, "
        f"AP {scores.ap:.2f}, energy-envelope correlation {envelope_correlation(generated, clip.audio):.2f}"
    )
    manifest = json.loads((repo / "manifest.json").read_text())
    if any(entry.get("noise_weights") for entry in manifest["models"].values()):
        print(
            "note: the networks have seeded random weights (no checkpoints given to `s2s export`): the sound is noise"
        )
    return 0


# --------------------------------------------------------------------------------------------- bench
def add_bench(sub: argparse._SubParsersAction) -> None:
    from s2s.export.layout import MODEL_NAMES

    p = sub.add_parser("bench", help="benchmarks", description="Benchmarks; results land under --output.")
    kinds = p.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    n = kinds.add_parser(
        "networks",
        help="each network per 10 s window: PyTorch eager vs ONNX Runtime on this CPU",
        description="Time every network on one 10 s window in PyTorch eager and in ONNX Runtime (same inputs, "
        "same threads), report medians as JSON and a Markdown table.",
    )
    n.add_argument("--output", type=Path, default=Path("runs/bench-networks"), help="folder (default: %(default)s)")
    n.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated subset (default: all)")
    n.add_argument("--repeats", type=int, default=3, help="timed runs per model and runtime (default: %(default)s)")
    n.add_argument("--threads", type=int, help="threads for both runtimes (default: all cores)")
    n.set_defaults(func=cmd_bench_networks)
    f = kinds.add_parser(
        "flow",
        help="TV-L1 per window: OpenCV on the CPU vs PyTorch batched on each device",
        description="Time OpenCV's TV-L1 (pair by pair, all cores) against s2s's PyTorch TV-L1 (all pairs at once) on "
        "the sample video's 340x256 frames, per device; report per pair, per 10 s window and the difference.",
    )
    f.add_argument("--output", type=Path, default=Path("runs/bench-flow"), help="folder (default: %(default)s)")
    f.add_argument(
        "--frames", type=int, default=16, help="consecutive frames, pairs = frames - 1 (default: %(default)s)"
    )
    f.add_argument(
        "--devices", default="cpu,cuda", help="torch devices; cuda is skipped without one (default: %(default)s)"
    )
    f.add_argument("--repeats", type=int, default=3, help="timed runs (default: %(default)s)")
    f.add_argument("--max-pairs", type=int, default=64, help="pairs solved at once (default: %(default)s)")
    f.set_defaults(func=cmd_bench_flow)
    e = kinds.add_parser(
        "pipeline",
        help="end-to-end seconds per 10 s clip: the ensemble in Triton vs the same chain in-process",
        description="For each flow method, a generated 10 s clip through the `s2s` ensemble in the embedded Triton "
        "and through the same ONNX files in-process (ONNX Runtime), side by side; medians as JSON and Markdown.",
    )
    e.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY, help="exported (default: %(default)s)")
    e.add_argument("--output", type=Path, default=Path("runs/bench-pipeline"), help="folder (default: %(default)s)")
    e.add_argument("--flow-methods", default="dis,tvl1", help="comma-separated (default: %(default)s)")
    e.add_argument("--repeats", type=int, default=3, help="timed runs with dis (default: %(default)s)")
    e.add_argument("--tvl1-repeats", type=int, default=1, help="timed runs with tvl1 (over a minute each on CPU)")
    e.set_defaults(func=cmd_bench_pipeline)
    from s2s.bench.harness import SCENARIOS, HarnessOptions

    d = HarnessOptions()
    h = kinds.add_parser(
        "perf",
        help="perf_analyzer on the ensemble and every model, with a report",
        description="Drive NVIDIA perf_analyzer against the embedded Triton (started on a temporary repository "
        "linking the exported models, with the instance counts and flow method given here) or a running server "
        "(--url). Scenarios: online (latency at fixed concurrencies), offline (max throughput), rate (latency at "
        "fixed request rates), models (each composing model alone). The same clip also runs in-process as a "
        "reference. Writes results.json/.csv, report.md and PNG plots under --output/<UTC time>/.",
    )
    h.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY, help="exported (default: %(default)s)")
    h.add_argument("--output", type=Path, default=d.output, help="runs land in <output>/<time> (default: %(default)s)")
    h.add_argument(
        "--scenarios", default=",".join(d.scenarios), help=f"of {','.join(SCENARIOS)} (default: %(default)s)"
    )
    h.add_argument(
        "--clip-seconds", type=float, default=d.clip_seconds, help="generated clip length (default: %(default)s)"
    )
    h.add_argument("--concurrency", default="1,2", help="online concurrencies (default: %(default)s)")
    h.add_argument("--offline-concurrency", default="4", help="offline concurrencies (default: %(default)s)")
    h.add_argument("--request-rates", default="", help="rate scenario, requests/s, e.g. 0.02,0.05")
    h.add_argument("--model-concurrency", default="1", help="models scenario concurrencies (default: %(default)s)")
    h.add_argument("--models", default=",".join(d.models), help="models scenario subset (default: %(default)s)")
    h.add_argument("--flow-method", choices=["dis", "tvl1"], default=d.flow_method, help="(default: %(default)s)")
    h.add_argument("--preprocess-instances", type=int, default=d.preprocess_instances, help="(default: %(default)s)")
    h.add_argument("--instances", type=int, default=d.instances, help="instances per network (default: %(default)s)")
    h.add_argument("--url", help="gRPC address of a running server instead of starting one (e.g. host:8001)")
    h.add_argument("--http-url", help="its HTTP address, for statistics (default: the gRPC one with port 8000)")
    h.add_argument("--reference-runs", type=int, default=d.reference_runs, help="in-process runs, 0 to skip")
    h.add_argument(
        "--request-count",
        type=int,
        default=d.measurement.request_count,
        help="requests per perf_analyzer measurement window (default: %(default)s)",
    )
    h.add_argument("--max-trials", type=int, default=d.measurement.max_trials, help="(default: %(default)s)")
    h.add_argument(
        "--stability",
        type=float,
        default=d.measurement.stability_percent,
        help="stability threshold, percent (default: %(default)s)",
    )
    h.set_defaults(func=cmd_bench_perf)


def cmd_bench_networks(args: argparse.Namespace) -> int:
    from s2s.bench.networks import main as bench_main

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    return bench_main(args.output, models, args.repeats, args.threads)


def cmd_bench_flow(args: argparse.Namespace) -> int:
    from s2s.bench.flow import main as bench_main

    devices = tuple(d.strip() for d in args.devices.split(",") if d.strip())
    return bench_main(args.output, args.frames, devices, args.repeats, args.max_pairs)


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from s2s.bench.pipeline import main as bench_main

    methods = tuple(m.strip() for m in args.flow_methods.split(",") if m.strip())
    return bench_main(args.model_repository, args.output, methods, {"dis": args.repeats, "tvl1": args.tvl1_repeats})


def cmd_bench_perf(args: argparse.Namespace) -> int:
    from s2s.bench.harness import HarnessOptions, parse_list, run
    from s2s.bench.perf import Measurement, PerfError

    options = HarnessOptions(
        repository=args.model_repository, output=args.output, scenarios=parse_list(args.scenarios, str),
        clip_seconds=args.clip_seconds, concurrency=parse_list(args.concurrency),
        offline_concurrency=parse_list(args.offline_concurrency), request_rates=parse_list(args.request_rates, float),
        model_concurrency=parse_list(args.model_concurrency), models=parse_list(args.models, str),
        url=args.url, http_url=args.http_url, flow_method=args.flow_method,
        preprocess_instances=args.preprocess_instances, instances=args.instances,
        reference_runs=args.reference_runs,
        measurement=Measurement(
            request_count=args.request_count, stability_percent=args.stability, max_trials=args.max_trials
        ),
    )  # fmt: skip
    try:
        out = run(options)
    except (PerfError, ValueError, FileNotFoundError) as exc:
        log.error("benchmark failed: %s", exc)
        return 1
    print((out / "report.md").read_text())
    print(f"results: {out}")
    return 0


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s", description="Silence to Sound on Triton Inference Server.")
    parser.add_argument("--version", action="version", version=f"s2s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve(sub)
    add_doctor(sub)
    add_export(sub)
    add_train(sub)
    add_eval(sub)
    add_generate(sub)
    add_gateway(sub)
    add_demo(sub)
    add_bench(sub)
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
