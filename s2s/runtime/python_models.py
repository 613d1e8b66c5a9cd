"""The Python-backend models of the ensemble: ``preprocess`` (the flow extractor) and ``postprocess``.

Each request gets exactly one response, in order; a video that cannot be used gets its own
INVALID_ARG error naming the problem while the other requests of the same call are served.
The preprocess model reads its :class:`~s2s.windowing.PreprocessOptions` from its configuration's
``parameters`` (written by ``s2s export``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

try:  # only importable inside a Triton Python-backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - exercised outside the server
    pb_utils = None

from s2s.constants import REGNET
from s2s.errors import OptionError
from s2s.video import VideoError
from s2s.windowing import PreprocessOptions, postprocess, preprocess


def _error(message: str, code_name: str = "INVALID_ARG") -> Any:
    code = getattr(pb_utils.TritonError, code_name, None)
    error = pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def _optional_int(request: Any, name: str) -> int:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return 0
    value = tensor.as_numpy().reshape(-1)
    if value.size != 1:
        raise VideoError(f"{name} must hold one integer, got shape {list(tensor.as_numpy().shape)}")
    return int(value[0])


def _optional_float(request: Any, name: str) -> float | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    value = tensor.as_numpy().reshape(-1)
    if value.size != 1 or not np.isfinite(value[0]):
        raise VideoError(f"{name} must hold one finite number, got {tensor.as_numpy().tolist()}")
    return float(value[0])


def _requested(request: Any) -> set[str] | None:
    """The outputs a request asks for: an ensemble step asks for those its output_map names, a client for those
    it lists (Triton fills in all of the model's when it lists none); None where the backend cannot say."""
    names = getattr(request, "requested_output_names", None)
    if names is None:
        return None
    return set(names()) or None


def _tensor(name: str, data: Any) -> Any:
    """An output tensor from a numpy array, or from a torch tensor without copying (GPU memory stays there)."""
    if isinstance(data, np.ndarray):
        return pb_utils.Tensor(name, data)
    from torch.utils.dlpack import to_dlpack

    return pb_utils.Tensor.from_dlpack(name, to_dlpack(data.contiguous()))


class PreprocessModel:
    """video uint8 [N] (a video file or a still image; + optional window_start, window_count int32 [1] and, for
    a still, duration_s fp32 [1]; 0 or absent: the defaults, as perf_analyzer's all-inputs folders send) ->
    rgb [W, n, 3, 224, 224], flow [W, n, 2, 224, 224], motion [W, n, 60] (each window's distinct frames; motion:
    s2s.motion's statistics of their flow), frame_index [W, T] (which
    of them makes each frame), z [W, z_dim], and the output layout for postprocess: layout [W, 2, 4] (where each
    window's sound and mel go, and their fades), samples [1], mel_frames [1]; offset [2] (where this output
    starts in the whole video's: sample, mel frame) and windows [1] (of the whole video). Only the outputs a
    request asks for are sent, and rgb and motion computed only if asked for: the ensemble of a generator fed
    rgb,flow does not pay for the motion statistics, one fed motion,flow not for the RGB frames.
    """

    def initialize(self, args: dict[str, str]) -> None:
        import cv2

        self.options = PreprocessOptions.from_model_config(json.loads(args["model_config"]))
        cv2.setNumThreads(self.options.opencv_threads)
        # a GPU instance computes TV-L1 with PyTorch on its GPU and leaves rgb/flow there (DLPack);
        # CPU instances (and DIS everywhere) use OpenCV
        self.flow_device = None
        if args.get("model_instance_kind") == "GPU" and self.options.flow_method == "tvl1":
            self.flow_device = f"cuda:{args.get('model_instance_device_id', '0')}"
        self.logger = pb_utils.Logger
        self.logger.log_info(f"preprocess: {self.options}, flow on {self.flow_device or 'CPU (OpenCV)'}")
        if self.flow_device is not None:  # compile TV-L1's fused kernels while loading, not in the first request
            from s2s.tvl1 import compile_ahead

            start = time.perf_counter()
            failures = compile_ahead(self.flow_device, REGNET.flow_height, REGNET.flow_width)
            self.logger.log_info(
                f"preprocess: TV-L1 kernels compiled in {time.perf_counter() - start:.1f} s"
                if not failures
                else f"preprocess: TV-L1 runs unfused (slower): {failures}"
            )

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            video = pb_utils.get_input_tensor_by_name(request, "video").as_numpy()
            start = time.perf_counter()
            try:
                if video.dtype != np.uint8 or video.ndim != 1:
                    raise VideoError(f"video must be uint8 [bytes], got {video.dtype} {list(video.shape)}")
                wanted = _requested(request)
                windows = preprocess(
                    video.tobytes(), self.options, window_start=_optional_int(request, "window_start"),
                    window_count=_optional_int(request, "window_count"),
                    duration_s=_optional_float(request, "duration_s") or None, flow_device=self.flow_device,
                    outputs=wanted,
                )  # fmt: skip
            except VideoError as exc:
                responses.append(_error(f"preprocess: {exc}"))
                continue
            except Exception as exc:  # a bug, not the user's input: say so, keep serving
                self.logger.log_error(f"preprocess failed: {type(exc).__name__}: {exc}")
                responses.append(_error(f"preprocess: internal error: {type(exc).__name__}: {exc}", "INTERNAL"))
                continue
            if self.flow_device is not None:  # the outputs' producer stream must be done before Triton reads them
                import torch

                torch.cuda.synchronize(self.flow_device)
            self.logger.log_verbose(
                f"preprocess: {video.size} bytes -> {windows.num_windows} windows of {windows.num_frames} frames "
                f"in {time.perf_counter() - start:.2f} s"
            )
            made = {
                "rgb": windows.rgb, "flow": windows.flow, "motion": windows.motion,
                "frame_index": windows.frame_index, "z": windows.z, "layout": windows.layout,
                "samples": np.array([windows.samples], dtype=np.int32),
                "mel_frames": np.array([windows.mel_frames], dtype=np.int32), "offset": windows.offset,
                "windows": np.array([windows.total_windows], dtype=np.int32),
            }  # fmt: skip
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[_tensor(name, data) for name, data in made.items() if wanted is None or name in wanted]
            ))  # fmt: skip
        return responses

    def finalize(self) -> None:
        pass


class PostprocessModel:
    """waveform [W, S], mel [W, 80, F], layout [W, 2, 4], samples [1], mel_frames [1] -> waveform [samples],
    mel [80, M]: the windows placed, cross-faded where they overlap, trimmed."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        if config.get("parameters"):
            raise OptionError(f"postprocess takes no parameters, got {sorted(config['parameters'])}")

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                waveforms = pb_utils.get_input_tensor_by_name(request, "waveform").as_numpy()
                mels = pb_utils.get_input_tensor_by_name(request, "mel").as_numpy()
                layout = pb_utils.get_input_tensor_by_name(request, "layout").as_numpy()
                samples = int(pb_utils.get_input_tensor_by_name(request, "samples").as_numpy().reshape(-1)[0])
                frames = int(pb_utils.get_input_tensor_by_name(request, "mel_frames").as_numpy().reshape(-1)[0])
                waveform, mel = postprocess(waveforms, mels, layout, samples, frames)
            except ValueError as exc:
                responses.append(_error(f"postprocess: {exc}"))
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("waveform", waveform), pb_utils.Tensor("mel", mel)]
                )
            )
        return responses

    def finalize(self) -> None:
        pass
