"""The video -> sound chain as plain functions, shared by the Triton models and the in-process reference.

    preprocess(video bytes)  -> Windows: rgb uint8 [W, n, 3, 224, 224], flow uint8 [W, n, 2, 224, 224],
                                frame_index int32 [W, T], noise z fp32 [W, z_dim], and the output layout:
                                spans, samples, mel_frames
    (networks)                  tsn_rgb, tsn_flow -> generator (loops by frame_index) -> vocoder, batched over W
    postprocess(waveforms [W, S], mels [W, 80, F], layout) -> waveform [samples], mel [80, mel_frames]

Windows: T frames each (215 = 10 s at 21.5 fps by default). The last window of a video is filled by
looping its own frames, as RegNet loops clips shorter than 10 s; the output is trimmed back to the
video's duration. The encoders are per frame, so a frame is sent to them once: each window carries its
n distinct frames (n = the most any window of the request has: 215 for full windows, fewer for a request
of one short window, 1 for a still) and ``frame_index`` says which of them makes each of its T frames;
the generator loops the features by it, which gives exactly the features of the looped frames.

A window's T frames span T / fps seconds, while the vocoder returns 4 T * 256 samples (9.984 s for
10 s): each window's audio is resampled to its exact span before the windows are joined, so sound
stays aligned with the picture over long videos. Window k covers the samples
``[round(k * T / fps * sr), round((k + 1) * T / fps * sr))`` of the whole video, so any range of
windows, served on its own, joins exactly with its neighbours.

The noise z of each window is drawn from a generator seeded by the video's bytes (and a seed
parameter), so the same video always gives the same sound.

What preprocess does with a video is one record, :class:`PreprocessOptions`: ``s2s export`` writes it
into the preprocess model's Triton parameters, the Python model reads it back, and the benchmarks, the
client and the in-process reference read it from a served or exported configuration.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from s2s.constants import REGNET, Recipe
from s2s.errors import OptionError
from s2s.flags import flag
from s2s.flow import FLOW_METHODS, network_inputs, still_inputs
from s2s.video import VideoError, VideoLimits, decode_video

#: parameters of the preprocess model that belong to the Python backend itself, not to this record
BACKEND_PARAMETERS = ("FORCE_CPU_ONLY_INPUT_TENSORS",)


@dataclass(frozen=True)
class PreprocessOptions:
    """What the preprocess step does: flow, windows, noise, limits, and how many videos it takes at once.

    Serialised to the preprocess model's Triton parameters (:meth:`to_parameters`, one string each,
    ``limits`` flattened) and read back from a model configuration (:meth:`from_model_config`), where
    ``instances`` is the instance group's count, not a parameter.
    """

    flow_method: str = flag(
        "dis", "--flow-method", "optical flow: dis (fast, the CPU default) or tvl1 (RegNet's reference)",
        choices=FLOW_METHODS,
    )  # fmt: skip
    window_frames: int = flag(REGNET.frames_per_window, "--window-frames", "frames per window, 215 = 10 s at 21.5 fps")
    #: noise width: the exported generator's (``s2s export`` fills it in; 0 until then)
    z_dim: int = 0
    seed: int = flag(0, "--noise-seed", "seed mixed with each video's hash for its noise z")
    opencv_threads: int = flag(1, "--opencv-threads", "OpenCV threads per preprocess instance")
    limits: VideoLimits = VideoLimits()
    #: one stub process each, so this many videos decode and compute flow at once. Rule of thumb:
    #: CPU cores / opencv_threads, minus what the networks need on a CPU-only machine
    instances: int = flag(2, "--preprocess-instances", "preprocess instances = videos decoded at once")

    def __post_init__(self) -> None:
        if self.flow_method not in FLOW_METHODS:
            raise OptionError(f"unknown flow method {self.flow_method!r}; known: {', '.join(FLOW_METHODS)}")
        if self.window_frames < 1 or self.instances < 1 or self.opencv_threads < 0 or self.z_dim < 0:
            raise OptionError(
                f"window_frames and instances must be >= 1, opencv_threads and z_dim >= 0; got {self.window_frames}, "
                f"{self.instances}, {self.opencv_threads}, {self.z_dim}"
            )

    def to_parameters(self) -> dict[str, str]:
        """The Triton parameters of the preprocess model (``instances`` excluded: it is the instance count)."""
        if self.z_dim < 1:
            raise OptionError("z_dim is not set: it is the exported generator's noise width")
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("limits", "instances")}
        values |= {f.name: getattr(self.limits, f.name) for f in fields(self.limits)}
        return {key: str(value) for key, value in values.items()}

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str], instances: int, model: str = "preprocess"):
        """The record from Triton parameters (strings); an unknown, missing or malformed one is an error."""
        own = {f.name: f for f in fields(cls) if f.name not in ("limits", "instances")}
        limit_fields = {f.name: f for f in fields(VideoLimits)}
        unknown = sorted(set(parameters) - set(own) - set(limit_fields) - set(BACKEND_PARAMETERS))
        missing = sorted((set(own) | set(limit_fields)) - set(parameters))
        if unknown or missing:
            raise OptionError(
                f"{model}: parameters do not match s2s's preprocess options (unknown: {unknown or 'none'}; "
                f"missing: {missing or 'none'}): export the repository again with this version of s2s"
            )

        def read(name: str, kind: type) -> Any:
            try:
                return kind(parameters[name])
            except ValueError:
                raise OptionError(
                    f"{model}: parameter {name}={parameters[name]!r} is not a valid {kind.__name__}"
                ) from None

        kinds = {f.name: type(getattr(cls(), f.name)) for f in own.values()}
        limits = VideoLimits(**{n: read(n, type(getattr(VideoLimits(), n))) for n in limit_fields})
        return cls(**{n: read(n, kinds[n]) for n in own}, limits=limits, instances=instances)

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> PreprocessOptions:
        """The record from a model configuration in Triton's JSON form (what a Python model is given,
        what ``get_model_config`` answers, what :func:`s2s.export.triton_config.read_model_config` reads)."""
        parameters = {k: (v or {}).get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        groups = config.get("instance_group") or [{}]
        return cls.from_parameters(parameters, int(groups[0].get("count", 1)), str(config.get("name", "preprocess")))


@dataclass
class Windows:
    rgb: np.ndarray  #: uint8 (W, n, 3, 224, 224), BGR: each window's distinct frames
    flow: np.ndarray  #: uint8 (W, n, 2, 224, 224)
    frame_index: np.ndarray  #: int32 (W, T): the row of ``rgb``/``flow`` (and their features) of each frame
    z: np.ndarray  #: float32 (W, z_dim)
    duration_s: float  #: duration these windows cover (the whole video's, or the requested range's)
    num_frames: int  #: real (unlooped) frames of the whole video at the recipe's fps
    total_windows: int = 0  #: windows of the whole video
    window_start: int = 0  #: index of the first window here
    spans: np.ndarray | None = None  #: int32 (W,): output samples each window covers in the whole video
    samples: int = 0  #: output samples of these windows, trimmed at the video's end
    mel_frames: int = 0  #: output mel frames of these windows, trimmed at the video's end

    @property
    def num_windows(self) -> int:
        return int(self.rgb.shape[0])

    def looped(self, rows: Any) -> Any:
        """Per-window rows (W, n, ...) - ``rgb``, ``flow`` or their features, numpy or torch - as every
        frame of every window (W, T, ...), what the generator sees."""
        if isinstance(rows, np.ndarray):
            return rows[np.arange(len(rows))[:, None], self.frame_index]
        import torch

        index = torch.from_numpy(self.frame_index).to(rows.device).long()
        return rows[torch.arange(len(rows), device=rows.device)[:, None], index]

    def every_frame(self) -> Windows:
        """The same windows with every frame's rgb and flow sent as it is (the frame index the identity):
        what the encoders would see without looping features; the sound is the same."""
        frames = self.frame_index.shape[1]
        identity = np.tile(np.arange(frames, dtype=np.int32), (self.num_windows, 1))
        return replace(self, rgb=self.looped(self.rgb), flow=self.looped(self.flow), frame_index=identity)


def window_indices(num_frames: int, window_frames: int) -> np.ndarray:
    """(W, T) frame indices: consecutive windows, the last one looping its own frames."""
    if num_frames < 1 or window_frames < 1:
        raise ValueError(f"need at least one frame and window frame, got {num_frames} and {window_frames}")
    windows = math.ceil(num_frames / window_frames)
    rows = []
    for w in range(windows):
        start = w * window_frames
        count = min(window_frames, num_frames - start)
        rows.append(start + np.arange(window_frames) % count)
    return np.stack(rows)


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W, T) frame indices -> the frames each window needs once, (W, n) with n = the most any window needs
    (a window with fewer repeats its own), and the int32 (W, T) index of each of its frames in that row."""
    uniques, inverses = zip(*(np.unique(row, return_inverse=True) for row in rows), strict=True)
    n = max(u.size for u in uniques)
    kept = np.stack([u[np.arange(n) % u.size] for u in uniques])
    return kept, np.stack(inverses).astype(np.int32)


def window_noise(video: bytes, windows: int, z_dim: int, seed: int = 0) -> np.ndarray:
    """Reproducible per-video noise: float32 (windows, z_dim) ~ N(0, 1)."""
    digest = int.from_bytes(hashlib.sha256(video).digest()[:8], "little")
    return np.random.default_rng([seed, digest]).standard_normal((windows, z_dim)).astype(np.float32)


@dataclass
class WindowFrames:
    """What preprocess decides before any flow: the decoded frames these windows use and everything else
    of their :class:`Windows`."""

    frames: np.ndarray  #: uint8 (N, H, W, 3) BGR: the frames the windows use, and the next one for flow
    rows: np.ndarray  #: (W, T) indices into ``frames``
    fields: dict  #: the other fields of :class:`Windows`
    still: bool = False  #: a still image: ``frames`` is its one picture, with no motion


def decode_windows(
    video: bytes,
    options: PreprocessOptions,
    *,
    window_start: int = 0,
    window_count: int = 0,
    duration_s: float | None = None,
    recipe: Recipe = REGNET,
) -> WindowFrames:
    """Decode, resample and choose the frames of a range of windows (raises VideoError on unusable input).

    ``window_start`` / ``window_count`` (0: to the end) select a range of windows, so that a long video
    can be served window by window (progress, fairness between jobs); the pieces join to exactly what
    one request for the whole video returns: same frames, same flow at the seams, same noise.
    ``duration_s``: how long a still image lasts (s2s.video.STILL_DURATION_S if None; videos: None).
    """
    if options.z_dim < 1:
        raise OptionError("preprocess needs z_dim, the generator's noise width (PreprocessOptions.z_dim)")
    window_frames = options.window_frames
    if window_start < 0 or window_count < 0:
        raise VideoError(f"window_start and window_count must be >= 0, got {window_start} and {window_count}")
    need = (window_start + window_count) * window_frames + 1 if window_count else None
    decoded = decode_video(video, options.limits, recipe, max_frames=need, still_duration_s=duration_s)
    total = decoded.total_frames or decoded.num_frames
    index = window_indices(total, window_frames)
    windows = index.shape[0]
    if window_start >= windows:
        raise VideoError(f"window_start {window_start} is past the video's {windows} window(s)")
    rows = index[window_start : window_start + window_count if window_count else None]
    # frames these windows use, plus the next one for the flow of their last frame; at the end of the
    # video keep two, so the last frame repeats the previous flow exactly as for the whole video
    end = min(int(rows.max()) + 2, total)
    first = min(int(rows.min()), max(0, end - 2))
    window_s = window_frames / recipe.fps
    n = rows.shape[0]
    start_s, end_s = window_start * window_s, min((window_start + n) * window_s, decoded.duration_s)
    at = lambda t: round(t * recipe.sample_rate)  # noqa: E731 (sample index of a time, one rounding rule)
    spans = np.array([at((k + 1) * window_s) - at(k * window_s) for k in range(window_start, window_start + n)])
    mel_per_window = recipe.mel_frames(window_frames)
    mel_frames = math.ceil(end_s * mel_per_window / window_s - 1e-6) - window_start * mel_per_window
    z = window_noise(bytes(video), windows, options.z_dim, options.seed)[window_start : window_start + n]
    fields = dict(
        z=z, duration_s=end_s - start_s, num_frames=total, total_windows=windows, window_start=window_start,
        spans=spans.astype(np.int32), samples=max(1, at(end_s) - at(start_s)), mel_frames=max(1, mel_frames),
    )  # fmt: skip
    if decoded.still:  # every frame is the one picture
        return WindowFrames(decoded.frames, np.zeros_like(rows), fields, still=True)
    return WindowFrames(decoded.frames[first:end], rows - first, fields)


def preprocess(
    video: bytes,
    options: PreprocessOptions,
    *,
    window_start: int = 0,
    window_count: int = 0,
    duration_s: float | None = None,
    flow_device: str | None = None,
    recipe: Recipe = REGNET,
) -> Windows:
    """Decode, resample, compute flow and cut into windows (raises VideoError on unusable input).

    The windows are :func:`decode_windows`'s (``window_start``, ``window_count``). ``flow_device`` (a torch
    device, e.g. "cuda:0"): compute TV-L1 and the network inputs there with PyTorch (s2s.tvl1); ``rgb``
    and ``flow`` are then torch tensors on that device.
    """
    decoded = decode_windows(
        video, options, window_start=window_start, window_count=window_count, duration_s=duration_s, recipe=recipe
    )
    if flow_device is not None:
        (windows,) = windows_on_device([decoded], options, flow_device, recipe)
        return windows
    rgb, flow = network_inputs_of(decoded, options, recipe)
    kept, index = distinct_rows(decoded.rows)
    return Windows(rgb=rgb[kept], flow=flow[kept], frame_index=index, **decoded.fields)


def network_inputs_of(clip: WindowFrames, options: PreprocessOptions, recipe: Recipe = REGNET):
    """rgb and flow of a clip's frames on the CPU (OpenCV): a still's one picture has no motion."""
    if clip.still:
        return still_inputs(clip.frames, recipe)
    return network_inputs(clip.frames, options.flow_method, recipe)


def windows_on_device(
    clips: list[WindowFrames], options: PreprocessOptions, device: str, recipe: Recipe = REGNET
) -> list[Windows]:
    """The windows of several decoded clips with TV-L1 on a torch ``device``, the frame pairs of all of
    them solved at once (s2s.flow.network_inputs_torch_many); rgb and flow stay on the device."""
    if options.flow_method != "tvl1":
        raise OptionError(f"flow on a torch device is TV-L1 only, not {options.flow_method!r}")
    import torch

    from s2s.flow import network_inputs_torch_many

    moving_frames = [c.frames for c in clips if not c.still]
    moving = iter(network_inputs_torch_many(moving_frames, device, recipe) if moving_frames else [])
    out = []
    for clip in clips:
        if clip.still:  # nothing to solve: the picture's inputs, moved to the device
            rgb, flow = (torch.from_numpy(x).to(device) for x in still_inputs(clip.frames, recipe))
        else:
            rgb, flow = next(moving)
        kept, index = distinct_rows(clip.rows)
        rows = torch.from_numpy(kept).to(rgb.device)
        out.append(Windows(rgb=rgb[rows], flow=flow[rows], frame_index=index, **clip.fields))
    return out


def postprocess(
    waveforms: np.ndarray, mels: np.ndarray, spans: np.ndarray, samples: int, mel_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Join window outputs into one waveform (float32, ``samples``) and one mel (80, ``mel_frames``).

    ``waveforms`` (W, 4 T * hop): each is resampled to its ``spans[w]`` samples (the exact time it
    covers), the windows are concatenated and trimmed; ``mels`` (W, 80, 4 T) are concatenated, trimmed.
    """
    import soxr

    spans = np.asarray(spans).reshape(-1)
    if waveforms.ndim != 2 or mels.ndim != 3 or not waveforms.shape[0] == mels.shape[0] == spans.size:
        raise ValueError(
            f"expected waveforms (W, S), mels (W, 80, F) and spans (W,), got {waveforms.shape}, {mels.shape}, "
            f"{spans.shape}"
        )
    parts = []
    for wave, span in zip(waveforms, spans, strict=True):
        part = soxr.resample(wave.astype(np.float64), wave.size, int(span), quality="HQ")[: int(span)]
        parts.append(np.pad(part, (0, int(span) - part.size)))
    waveform = np.concatenate(parts)[:samples].astype(np.float32)
    if waveform.size < samples:
        waveform = np.pad(waveform, (0, samples - waveform.size))
    mel = np.concatenate(list(mels), axis=1)[:, :mel_frames]
    return np.clip(waveform, -1.0, 1.0), np.ascontiguousarray(mel, dtype=np.float32)
