"""``s2s export``: the networks into a model repository (ONNX or TensorRT), with configs and manifest."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from s2s.export.specs import ExportOptions
from s2s.export.tensorrt import TensorRTProfile
from s2s.export.triton_config import ServingOptions
from s2s.flags import add_flags, comma_list, from_flags
from s2s.repository import MODEL_NAMES, add_repository_flag
from s2s.windowing import PreprocessOptions

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export",
        help="export the networks into the model repository",
        description="Build each network (from a checkpoint, the package's demo weights, or seeded random weights "
        "that make noise), export it to ONNX (or a TensorRT plan) under <repository>/<model>/1/, write its "
        "config.pbtxt, the Python steps and the s2s ensemble, and record the source of every artifact in "
        "<repository>/manifest.json.",
    )
    add_repository_flag(p, "target repository")
    p.add_argument(
        "--models", type=comma_list(str), default=MODEL_NAMES, metavar="NAMES",
        help=f"comma-separated subset (default: {','.join(MODEL_NAMES)})",
    )  # fmt: skip
    weights = p.add_argument_group("weights")
    add_flags(weights, ExportOptions)
    weights.add_argument(
        "--weights", choices=["demo", "seeded"], default="demo",
        help="where no checkpoint is given: demo = the package's trained demo generator and vocoder (made by "
        "`s2s train` on generated clips, paired with the seeded encoders), seeded = random weights, i.e. noise "
        "(default: %(default)s)",
    )  # fmt: skip
    add_flags(p.add_argument_group("serving"), ServingOptions)
    add_flags(p.add_argument_group("preprocess (decode, flow, windows, limits)"), PreprocessOptions)
    trt = p.add_argument_group("TensorRT (GPU)")
    add_flags(trt, TensorRTProfile)
    trt.add_argument(
        "--trt-cache", type=Path, metavar="DIR",
        help="persistent cache of TensorRT engines: plans (--format tensorrt) and the accelerator's engines "
        "(--trt-accelerator) go to DIR/<gpu>-sm<capability>-trt<version>/ and are reused when present",
    )  # fmt: skip
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from s2s.export.onnx_export import export_repository

    options = from_flags(ExportOptions, args)
    if args.weights == "demo":
        options = options.with_demo_weights()
    serving = from_flags(ServingOptions, args)
    profile = from_flags(TensorRTProfile, args, max_windows=serving.max_windows)
    uses_tensorrt = serving.trt_accelerator or serving.format == "tensorrt"
    trt_cache = None
    if args.trt_cache is not None and uses_tensorrt:
        from s2s.export.tensorrt import local_device_key

        trt_cache = args.trt_cache / local_device_key()
        trt_cache.mkdir(parents=True, exist_ok=True)
        log.info("TensorRT cache for this GPU: %s", trt_cache)
        if serving.trt_accelerator:
            serving = replace(serving, trt_cache_path=str(trt_cache.resolve()))
    elif args.trt_cache is not None:
        log.warning("--trt-cache ignored: nothing uses TensorRT (add --trt-accelerator or --format tensorrt)")
    manifest = export_repository(
        args.model_repository, options, serving, args.models, profile, from_flags(PreprocessOptions, args),
        trt_cache if serving.format == "tensorrt" else None,
    )  # fmt: skip
    for name in args.models:
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
    if serving.format == "onnx" and serving.device != "gpu":
        from s2s.runtime.ort_backend import cpu_path

        path = cpu_path(serving.cpu_accelerator, serving.cpu_precision)
        print(f"networks on this machine's CPU (embedded server): {path}")
    return 0
