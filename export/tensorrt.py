"""ONNX -> TensorRT FP16 engine (``model.plan``) with one optimisation profile per model. GPU only.

Plans are specific to the GPU and TensorRT version that build them: build them on the serving GPU
(the Helm chart's export init container does) and never ship them between machines. The shape ranges
are flags of ``s2s export --format tensorrt``; their defaults cover one to ``max_windows`` windows of
one to 215 frames, optimised for one full window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s2s.export.specs import ModelExport

from s2s.constants import REGNET
from s2s.errors import S2SError
from s2s.export.triton_config import ServingOptions
from s2s.flags import flag

log = logging.getLogger(__name__)


class TensorRTError(S2SError, RuntimeError):
    """TensorRT, a GPU or NVML is missing, or TensorRT cannot parse or build a graph."""


@dataclass(frozen=True)
class TensorRTProfile:
    """Shape ranges of the optimisation profile (in windows and video frames)."""

    min_windows: int = flag(1, "--trt-min-windows", "TensorRT profile: smallest batch of windows")
    opt_windows: int = flag(1, "--trt-opt-windows", "TensorRT profile: batch of windows to optimise for")
    #: the served max_batch_size (`s2s export` sets it from --max-windows)
    max_windows: int = ServingOptions.max_windows
    min_frames: int = flag(1, "--trt-min-frames", "TensorRT profile: fewest frames per window")
    opt_frames: int = flag(
        REGNET.frames_per_window, "--trt-opt-frames", "TensorRT profile: frames per window to optimise for"
    )
    max_frames: int = flag(REGNET.frames_per_window, "--trt-max-frames", "TensorRT profile: most frames per window")
    workspace_gib: float = flag(4.0, "--trt-workspace-gib", "TensorRT builder workspace")
    fp16: bool = True

    def shapes(self, export: ModelExport) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """min/opt/max shape of every input of ``export`` (batch dimension included)."""
        out = {}
        for t in export.inputs:
            ranges = []
            for windows, frames in (
                (self.min_windows, self.min_frames),
                (self.opt_windows, self.opt_frames),
                (self.max_windows, self.max_frames),
            ):
                ranges.append((windows, *(export.length(frames) if d == -1 else d for d in t.dims)))
            out[t.name] = tuple(ranges)
        return out


def build_plan(onnx_path: Path, plan_path: Path, export: ModelExport, profile: TensorRTProfile | None = None) -> Path:
    """Build and serialise a TensorRT engine; raises a clear error where TensorRT or a GPU is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTError(
            "--format tensorrt needs TensorRT and an NVIDIA GPU: pip install '.[gpu]' on the GPU machine "
            "(or export inside the NGC image)"
        ) from exc
    profile = profile or TensorRTProfile()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(profile.workspace_gib * (1 << 30)))
    if profile.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt = builder.create_optimization_profile()
    for name, (lo, mid, hi) in profile.shapes(export).items():
        opt.set_shape(name, lo, mid, hi)
    config.add_optimization_profile(opt)
    log.info("building TensorRT engine for %s (this takes minutes)", export.name)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise TensorRTError(f"TensorRT failed to build an engine for {export.name}")
    plan_path.write_bytes(bytes(engine))
    return plan_path


# ------------------------------------------------------------------------------------------ caching
# An engine is only valid for the GPU model and TensorRT version that built it. The Helm chart keeps a
# volume of engines so that a restarted pod loads them instead of spending minutes rebuilding them: the
# volume holds one directory per (GPU, compute capability, TensorRT) and, in it, one plan per graph and
# profile (ONNX Runtime's TensorRT accelerator keeps its own engine files in the same directory).


def device_key(gpu_name: str, capability: tuple[int, int], tensorrt_version: str) -> str:
    """Directory of the engines of one GPU model and TensorRT version, e.g. nvidia-h100-80gb-hbm3-sm90-trt10.5.0."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    return f"{slug}-sm{capability[0]}{capability[1]}-trt{tensorrt_version}"


def local_device_key() -> str:
    """:func:`device_key` of this machine's first GPU (NVML) and installed TensorRT."""
    try:
        import pynvml
        import tensorrt
    except ImportError as exc:
        raise TensorRTError(
            f"--trt-cache needs an NVIDIA GPU with TensorRT and nvidia-ml-py installed ({exc.name} is missing): "
            "pip install '.[gpu]' on the GPU machine, or use the chart's export image"
        ) from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise TensorRTError(f"--trt-cache needs an NVIDIA GPU: NVML cannot start ({exc})") from exc
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        capability = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
    finally:
        pynvml.nvmlShutdown()
    if isinstance(name, bytes):
        name = name.decode()
    return device_key(name, tuple(capability), tensorrt.__version__)


def plan_cache_name(onnx_path: Path, export: ModelExport, profile: TensorRTProfile) -> str:
    """File name of a plan in a device's cache directory: the model, its graph's and its profile's hash."""
    from s2s.models.checkpoints import file_sha256

    digest = hashlib.sha256(file_sha256(onnx_path).encode())
    digest.update(json.dumps(asdict(profile), sort_keys=True).encode())
    return f"{export.name}-{digest.hexdigest()[:24]}.plan"


def build_plan_cached(
    onnx_path: Path,
    plan_path: Path,
    export: ModelExport,
    profile: TensorRTProfile | None,
    cache_dir: Path,
    build: Callable[..., Path] = build_plan,
) -> tuple[Path, bool]:
    """Copy the cached plan of this graph and profile into place, or build it and add it to the cache.

    Returns ``(plan_path, True)`` on a cache hit. Writes to the cache are atomic (temporary file +
    rename), so pods sharing one cache volume never read half a plan.
    """
    profile = profile or TensorRTProfile()
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / plan_cache_name(onnx_path, export, profile)
    if cached.is_file():
        shutil.copyfile(cached, plan_path)
        log.info("TensorRT plan of %s from the cache: %s", export.name, cached)
        return plan_path, True
    build(onnx_path, plan_path, export, profile)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}.partial")
    shutil.copyfile(plan_path, partial)
    os.replace(partial, cached)
    log.info("TensorRT plan of %s built and cached: %s", export.name, cached)
    return plan_path, False
