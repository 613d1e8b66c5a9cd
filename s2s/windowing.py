"""The video -> sound chain as plain functions, shared by the Triton models and the in-process reference.

    preprocess(video bytes)  -> Windows: rgb uint8 [W, n, 3, 224, 224], flow uint8 [W, n, 2, 224, 224],
                                motion fp32 [W, n, 60] (s2s.motion), frame_index int32 [W, T], noise z
                                fp32 [W, z_dim], and the output layout: layout, samples, mel_frames, offset
    (networks)                  tsn_rgb, tsn_flow -> generator (loops by frame_index) -> vocoder, batched over W
    postprocess(waveforms [W, S], mels [W, 80, F], layout) -> waveform [samples], mel [80, mel_frames]

Windows: T frames each (215 = 10 s at 21.5 fps by default), consecutive windows sharing O frames
(``overlap_frames``, 21 = about 1 s by default): window k starts at frame k (T - O). The last window of a
video is filled by looping its own frames, as RegNet loops clips shorter than 10 s; the output is
trimmed back to the video's duration. Where two windows overlap, both make sound for the same frames and
postprocess cross-fades them linearly (in amplitude, for the waveform and the mel): windows generated
independently no longer butt at a seam, the sound passes from one to the next over about a second. A linear fade
keeps the level where the two windows make the same sound there, which the vocoders do: MelGAN and HiFi-GAN
from the mel alone, the iSTFT vocoder because it reads its noise at the window's frame in the whole video
(``stride_mel_frames``). Measured (benchmarks/README.md, "Seams: the iSTFT vocoder's noise read at the video's
frame"): the two windows correlate at 0.92-0.99 in the middle of an overlap, where an equal-power fade swelled
the sound by +3 dB.

The encoders are per frame, so a frame is sent to them once: each window carries its n distinct frames
(n = the most any window of the request has: 215 for full windows, fewer for a request of one short
window, 1 for a still) and ``frame_index`` says which of them makes each of its T frames;
the generator loops the features by it, which gives exactly the features of the looped frames.

A window's T frames span T / fps seconds, while the vocoder returns 4 T * 256 samples (9.984 s for
10 s): each window's audio is resampled to its exact span before the windows are joined, so sound
stays aligned with the picture over long videos. Window k covers the samples
``[round(k S / fps * sr), round((k S + T) / fps * sr))`` of the whole video (S = T - O) and the mel frames
``[4 k S, 4 (k S + T))``. A range of windows served on its own returns its windows already faded where
they meet windows outside the range, and where its sound starts in the whole video's (``offset``): the
ranges of a video, overlap-added at their offsets (:func:`join_ranges`), are exactly what one request
for the whole video returns.

The noise z of each window is drawn from a generator seeded by the video's bytes (and a seed
parameter), so the same video always gives the same sound.

What preprocess does with a video is one record, :class:`PreprocessOptions`: ``s2s export`` writes it
into the preprocess model's Triton parameters, the Python model reads it back, and the benchmarks, the
client and the in-process reference read it from a served or exported configuration.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from s2s.constants import REGNET, Recipe
from s2s.errors import OptionError
from s2s.flags import flag
from s2s.flow import FLOW_METHODS, network_inputs, still_inputs
from s2s.repository import INPUT_ENCODERS, INPUTS_REVISION
from s2s.video import Track, VideoError, VideoLimits, decode_video

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
    #: None: the recipe's (about 1 s), or half a window for windows shorter than two of that
    overlap_frames: int | None = flag(
        None, "--overlap-frames", "frames consecutive windows share, cross-faded (0: windows butt; at most half a "
        "window)", type=int, shown=f"{REGNET.overlap_frames} (about 1 s), at most half a window",
    )  # fmt: skip
    #: noise width: the exported generator's (``s2s export`` fills it in; 0 until then)
    z_dim: int = 0
    seed: int = flag(0, "--noise-seed", "seed mixed with each video's hash for its noise z")
    opencv_threads: int = flag(1, "--opencv-threads", "OpenCV threads per preprocess instance")
    limits: VideoLimits = VideoLimits()
    #: what preprocess computes (s2s.repository.INPUTS_REVISION): not an option, the record that a configuration
    #: exported by another version of s2s computes other inputs, and what a dataset made through it says
    inputs_revision: int = INPUTS_REVISION
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
        if self.inputs_revision != INPUTS_REVISION:
            raise OptionError(
                f"inputs_revision {self.inputs_revision}: this s2s computes the generator's inputs of revision "
                f"{INPUTS_REVISION} (s2s.repository.INPUTS_REVISION): export the repository again with this version"
            )
        if self.overlap_frames is None:  # frozen: set the resolved default once, as if it had been given
            object.__setattr__(self, "overlap_frames", min(REGNET.overlap_frames, self.window_frames // 2))
        if not 0 <= self.overlap_frames <= self.window_frames // 2:
            raise OptionError(
                f"overlap_frames must be between 0 and half a window ({self.window_frames // 2} of "
                f"{self.window_frames} frames), got {self.overlap_frames}"
            )

    @property
    def stride_frames(self) -> int:
        """Frames from one window's start to the next's."""
        return self.window_frames - self.overlap_frames

    @property
    def stride_mel_frames(self) -> int:
        """Mel frames (vocoder steps) from one window's start to the next's: how often a vocoder that reads noise
        reads it from the start again, so that every window reads the noise of its frames in the whole video."""
        return REGNET.mel_frames(self.stride_frames)

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
    rgb: np.ndarray | None  #: uint8 (W, n, 3, 224, 224), BGR: each window's distinct frames (None: not asked for)
    flow: np.ndarray  #: uint8 (W, n, 2, 224, 224)
    #: float32 (W, n, 60): s2s.motion's statistics of each distinct frame's flow (numpy; None: not asked for)
    motion: np.ndarray | None
    frame_index: np.ndarray  #: int32 (W, T): the row of ``rgb``/``flow`` (and their features) of each frame
    z: np.ndarray  #: float32 (W, z_dim)
    duration_s: float  #: duration these windows cover (the whole video's, or the requested range's)
    num_frames: int  #: real (unlooped) frames of the whole video at the recipe's fps
    total_windows: int = 0  #: windows of the whole video
    window_start: int = 0  #: index of the first window here
    #: int32 (W, 2, 4): where each window's output goes, for the waveform (row 0, samples) and the mel
    #: (row 1, frames): start in these windows' output, length, fade-in, fade-out (see :func:`window_layout`)
    layout: np.ndarray | None = None
    samples: int = 0  #: output samples of these windows, trimmed at the video's end
    mel_frames: int = 0  #: output mel frames of these windows, trimmed at the video's end
    #: int32 (2,): where these windows' output starts in the whole video's: sample, mel frame
    offset: np.ndarray | None = None

    @property
    def num_windows(self) -> int:
        return int(self.frame_index.shape[0])

    def looped(self, rows: Any) -> Any:
        """Per-window rows (W, n, ...) - ``rgb``, ``flow``, ``motion`` or features, numpy or torch - as every
        frame of every window (W, T, ...), what the generator sees."""
        if isinstance(rows, np.ndarray):
            return rows[np.arange(len(rows))[:, None], self.frame_index]
        import torch

        index = torch.from_numpy(self.frame_index).to(rows.device).long()
        return rows[torch.arange(len(rows), device=rows.device)[:, None], index]

    def every_frame(self) -> Windows:
        """The same windows with every frame's rgb, flow and motion sent as it is (the frame index the identity):
        what the encoders would see without looping features; the sound is the same."""
        frames = self.frame_index.shape[1]
        identity = np.tile(np.arange(frames, dtype=np.int32), (self.num_windows, 1))
        looped = {name: None if getattr(self, name) is None else self.looped(getattr(self, name))
                  for name in ("rgb", "flow", "motion")}  # fmt: skip
        return replace(self, **looped, frame_index=identity)


def generator_feed(inputs: Sequence[str], encode: Callable[[str, Any], Any], **made: Any) -> list:
    """The generator's ``inputs`` (s2s.repository.GENERATOR_INPUTS' names, in order) from preprocess's outputs
    ``made`` by those names (rgb, flow, motion: numpy or torch, as ``encode`` takes them): the encoders' features
    (``encode(network name, frames)``, s2s.repository.INPUT_ENCODERS), the motion statistics as they are."""
    return [encode(INPUT_ENCODERS[name], made[name]) if name in INPUT_ENCODERS else made[name] for name in inputs]


def window_count(num_frames: int, window_frames: int, overlap_frames: int = 0) -> int:
    """Windows of ``window_frames`` that cover ``num_frames``, each starting ``window_frames - overlap_frames``
    after the one before."""
    if num_frames < 1 or window_frames < 1:
        raise ValueError(f"need at least one frame and window frame, got {num_frames} and {window_frames}")
    stride = window_frames - overlap_frames
    return 1 + max(0, math.ceil((num_frames - window_frames) / stride))


def window_indices(num_frames: int, window_frames: int, overlap_frames: int = 0) -> np.ndarray:
    """(W, T) frame indices: window k starts at frame k (T - overlap), the last one looping its own frames."""
    stride = window_frames - overlap_frames
    rows = []
    for w in range(window_count(num_frames, window_frames, overlap_frames)):
        start = w * stride
        count = min(window_frames, num_frames - start)
        rows.append(start + np.arange(window_frames) % count)
    return np.stack(rows)


def window_layout(
    options: PreprocessOptions, total: int, first: int, count: int, end_s: float, recipe: Recipe = REGNET
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Where the outputs of windows ``[first, first + count)`` (of ``total``) go: their layout (int32
    (count, 2, 4): start, length, fade-in, fade-out, for samples and mel frames, relative to the range's
    output), the range's offset in the whole video's output (int32 (2,): sample, mel frame), and its
    length in samples and mel frames, trimmed at ``end_s`` (the video's end, or the range's last window's).

    Window k spans ``[k S, k S + T)`` frames (S the stride) = samples ``[at(k S / fps), at((k S + T) / fps))``
    with ``at(t) = round(t * sample_rate)``; it fades in over what it shares with window k - 1 and out over
    what it shares with window k + 1, so only the video's first and last windows have no fade there.
    """
    fps, frames, stride = recipe.fps, options.window_frames, options.stride_frames
    at = lambda f: round(f / fps * recipe.sample_rate)  # noqa: E731 (sample index of a frame time, one rounding rule)
    mel = recipe.mel_frames_per_frame
    origin = (at(first * stride), mel * first * stride)
    layout = np.zeros((count, 2, 4), dtype=np.int32)
    for i, k in enumerate(range(first, first + count)):
        start, end = k * stride, k * stride + frames
        fade_in = at((k - 1) * stride + frames) - at(start) if k > 0 else 0
        fade_out = at(end) - at((k + 1) * stride) if k < total - 1 else 0
        layout[i, 0] = (at(start) - origin[0], at(end) - at(start), fade_in, fade_out)
        mel_fade = mel * options.overlap_frames
        layout[i, 1] = (mel * start - origin[1], mel * frames, mel_fade * (k > 0), mel_fade * (k < total - 1))
    samples = max(1, round(end_s * recipe.sample_rate) - origin[0])
    mel_frames = max(1, math.ceil(end_s * fps * mel - 1e-6) - origin[1])
    return layout, np.array(origin, dtype=np.int32), samples, mel_frames


def seam_times(duration_s: float, options: PreprocessOptions, recipe: Recipe = REGNET) -> np.ndarray:
    """Seconds where one window's sound hands over to the next's inside a ``duration_s`` video: the middle
    of each overlap (the boundary itself when windows butt)."""
    num_frames = max(1, math.ceil(duration_s * recipe.fps - 1e-6))
    windows = window_count(num_frames, options.window_frames, options.overlap_frames)
    k = np.arange(1, windows)
    return (k * options.stride_frames + options.overlap_frames / 2) / recipe.fps


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

    #: the frames the windows use and the one before (whose flow the first frame's motion turns from), with the
    #: pictures their flow is measured between
    track: Track
    rows: np.ndarray  #: (W, T) indices into ``track``'s frames
    fields: dict  #: the other fields of :class:`Windows`
    still: bool = False  #: a still image: ``track`` is its one picture, with no motion


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
    stride = options.stride_frames
    need = (window_start + window_count - 1) * stride + window_frames + 1 if window_count else None
    decoded = decode_video(video, options.limits, recipe, max_frames=need, still_duration_s=duration_s)
    total = decoded.total_frames or decoded.num_frames
    index = window_indices(total, window_frames, options.overlap_frames)
    windows = index.shape[0]
    if window_start >= windows:
        raise VideoError(f"window_start {window_start} is past the video's {windows} window(s)")
    rows = index[window_start : window_start + window_count if window_count else None]
    # frames these windows use (each with the pictures of its own flow, as in the whole video: s2s.video.Track),
    # and the one before the first, whose flow the first frame's motion statistics turn from (s2s.motion)
    end = int(rows.max()) + 1
    first = max(0, int(rows.min()) - 1)
    n = rows.shape[0]
    start_s = window_start * stride / recipe.fps
    end_s = min(((window_start + n - 1) * stride + window_frames) / recipe.fps, decoded.duration_s)
    layout, offset, samples, mel_frames = window_layout(options, windows, window_start, n, end_s, recipe)
    z = window_noise(bytes(video), windows, options.z_dim, options.seed)[window_start : window_start + n]
    fields = dict(
        z=z, duration_s=end_s - start_s, num_frames=total, total_windows=windows, window_start=window_start,
        layout=layout, samples=samples, mel_frames=mel_frames, offset=offset,
    )  # fmt: skip
    if decoded.still:  # every frame is the one picture
        return WindowFrames(decoded.track, np.zeros_like(rows), fields, still=True)
    return WindowFrames(decoded.track.take(first, end), rows - first, fields)


def preprocess(
    video: bytes,
    options: PreprocessOptions,
    *,
    window_start: int = 0,
    window_count: int = 0,
    duration_s: float | None = None,
    flow_device: str | None = None,
    recipe: Recipe = REGNET,
    outputs: Collection[str] | None = None,
) -> Windows:
    """Decode, resample, compute flow and cut into windows (raises VideoError on unusable input).

    The windows are :func:`decode_windows`'s (``window_start``, ``window_count``). ``flow_device`` (a torch
    device, e.g. "cuda:0"): compute TV-L1 and the network inputs there with PyTorch (s2s.tvl1); ``rgb``
    and ``flow`` are then torch tensors on that device. ``outputs``: the names of the outputs the caller
    uses (None: all); ``rgb`` and ``motion`` are computed only if named (an ensemble whose generator is not
    fed one of them does not pay for it), the flow always.
    """
    decoded = decode_windows(
        video, options, window_start=window_start, window_count=window_count, duration_s=duration_s, recipe=recipe
    )
    if flow_device is not None:
        (windows,) = windows_on_device([decoded], options, flow_device, recipe, outputs)
        return windows
    rgb, flow, motion = network_inputs_of(decoded, options, recipe, outputs)
    kept, index = distinct_rows(decoded.rows)
    return Windows(rgb=_rows(rgb, kept), flow=flow[kept], motion=_rows(motion, kept), frame_index=index,
                   **decoded.fields)  # fmt: skip


def _wanted(outputs: Collection[str] | None) -> dict[str, bool]:
    """Which of the optional network inputs (rgb, motion) to compute for a caller that uses ``outputs``."""
    return {name: outputs is None or name in outputs for name in ("rgb", "motion")}


def _rows(inputs: Any, rows: Any) -> Any:
    return None if inputs is None else inputs[rows]


def network_inputs_of(
    clip: WindowFrames, options: PreprocessOptions, recipe: Recipe = REGNET, outputs: Collection[str] | None = None
):
    """rgb, flow and motion of a clip's frames on the CPU (OpenCV): a still's one picture has no motion. rgb
    and motion only if ``outputs`` names them (None: all), else None."""
    wanted = _wanted(outputs)
    if clip.still:  # one picture: nothing worth skipping
        rgb, flow, motion = still_inputs(clip.track.frames, recipe)
        return rgb if wanted["rgb"] else None, flow, motion if wanted["motion"] else None
    return network_inputs(clip.track, options.flow_method, recipe, **wanted)


def windows_on_device(
    clips: list[WindowFrames],
    options: PreprocessOptions,
    device: str,
    recipe: Recipe = REGNET,
    outputs: Collection[str] | None = None,
) -> list[Windows]:
    """The windows of several decoded clips with TV-L1 on a torch ``device``, the frame pairs of all of
    them solved at once (s2s.flow.network_inputs_torch_many); rgb and flow stay on the device, the motion
    statistics (a few numbers a frame) come to the host. rgb and motion only if ``outputs`` names them (None:
    all), as in :func:`preprocess`."""
    if options.flow_method != "tvl1":
        raise OptionError(f"flow on a torch device is TV-L1 only, not {options.flow_method!r}")
    import torch

    from s2s.flow import network_inputs_torch_many

    wanted = _wanted(outputs)
    moving_frames = [c.track for c in clips if not c.still]
    moving = iter(network_inputs_torch_many(moving_frames, device, recipe, **wanted) if moving_frames else [])
    out = []
    for clip in clips:
        if clip.still:  # nothing to solve: the picture's inputs, moved to the device
            rgb, flow, motion = still_inputs(clip.track.frames, recipe)
            rgb = torch.from_numpy(rgb).to(device) if wanted["rgb"] else None
            flow, motion = torch.from_numpy(flow).to(device), motion if wanted["motion"] else None
        else:
            rgb, flow, motion = next(moving)
        kept, index = distinct_rows(clip.rows)
        rows = torch.from_numpy(kept).to(flow.device)
        out.append(Windows(rgb=_rows(rgb, rows), flow=flow[rows], motion=_rows(motion, kept), frame_index=index,
                           **clip.fields))  # fmt: skip
    return out


def postprocess(
    waveforms: np.ndarray, mels: np.ndarray, layout: np.ndarray, samples: int, mel_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Join window outputs into one waveform (float32, ``samples``) and one mel (80, ``mel_frames``).

    ``waveforms`` (W, 4 T * hop): each is resampled to the exact samples it covers; ``mels`` (W, 80, 4 T).
    ``layout`` (W, 2, 4, :func:`window_layout`) places each and fades it linearly where it overlaps a
    neighbour (see the module's note: the two windows make the same sound there).
    """
    layout = np.asarray(layout)
    if waveforms.ndim != 2 or mels.ndim != 3 or layout.shape != (waveforms.shape[0], 2, 4) or \
            mels.shape[0] != waveforms.shape[0]:  # fmt: skip
        raise ValueError(
            f"expected waveforms (W, S), mels (W, 80, F) and layout (W, 2, 4), got {waveforms.shape}, "
            f"{mels.shape}, {layout.shape}"
        )
    parts = []
    for wave, (_, span, fade_in, fade_out) in zip(waveforms, layout[:, 0], strict=True):
        parts.append(_faded(to_span(wave, int(span)), fade_in, fade_out))
    waveform = overlap_add(parts, layout[:, 0, 0], samples)
    # clip to full scale where the sound is complete; what a window shares with one outside this range
    # is clipped once the ranges are joined (join_ranges), after the two are added
    start, span, _, fade_out = (int(v) for v in layout[-1, 0])
    complete = slice(int(layout[0, 0, 2]), min(waveform.size, start + span - fade_out))
    waveform[complete] = np.clip(waveform[complete], -1.0, 1.0)
    mel_parts = [_faded(m.astype(np.float32), fade_in, fade_out)
                 for m, (_, _, fade_in, fade_out) in zip(mels, layout[:, 1], strict=True)]  # fmt: skip
    return waveform, overlap_add(mel_parts, layout[:, 1, 0], mel_frames)


def to_span(wave: np.ndarray, span: int) -> np.ndarray:
    """A window's vocoded ``wave`` resampled to the ``span`` samples its frames cover (float32, exactly ``span``
    long), before any fade: what postprocess places of each window."""
    import soxr

    part = soxr.resample(wave.astype(np.float64), wave.size, span, quality="HQ")[:span]
    return np.pad(part, (0, span - part.size)).astype(np.float32)


def _faded(part: np.ndarray, fade_in: int, fade_out: int) -> np.ndarray:
    """``part`` (..., N) with its first ``fade_in`` and last ``fade_out`` steps faded linearly (a fade's two
    halves are the same ramp for both windows of an overlap, so their gains sum to 1)."""
    part = part.copy()
    for length, rising, where in ((int(fade_in), True, slice(0, int(fade_in))),
                                  (int(fade_out), False, slice(part.shape[-1] - int(fade_out), None))):  # fmt: skip
        if length <= 0:
            continue
        t = (np.arange(length, dtype=np.float64) + 0.5) / length
        t = t if rising else 1.0 - t
        part[..., where] *= t.astype(np.float32)[: part[..., where].shape[-1]]
    return part


def overlap_add(parts: list[np.ndarray], starts: Any, length: int) -> np.ndarray:
    """Sum of ``parts`` (each (..., n), float32) placed at ``starts`` along the last axis of an output of
    ``length`` (parts cut at its end): the one join of windows, and of window ranges."""
    lead = parts[0].shape[:-1]
    out = np.zeros((*lead, int(length)), dtype=np.float32)
    for part, start in zip(parts, starts, strict=True):
        start = int(start)
        if start < 0:
            raise ValueError(f"a part starts before the output ({start})")
        take = max(0, min(part.shape[-1], int(length) - start))
        out[..., start : start + take] += part[..., :take]
    return out


def join_ranges(pieces: list[tuple[np.ndarray, np.ndarray, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Window ranges of one video as (waveform, mel, offset) -> the whole video's (waveform, mel): each
    placed at its offset (sample, mel frame) and overlap-added, which is exactly the one request's."""
    starts = [np.asarray(offset).reshape(-1) for _, _, offset in pieces]
    first = (min(int(s[0]) for s in starts), min(int(s[1]) for s in starts))
    if first != (0, 0):
        raise ValueError(f"window ranges must start with the video's first window, they start at {first}")
    samples = max(int(s[0]) + p[0].size for s, p in zip(starts, pieces, strict=True))
    frames = max(int(s[1]) + p[1].shape[-1] for s, p in zip(starts, pieces, strict=True))
    waveform = overlap_add([p[0] for p in pieces], [s[0] for s in starts], samples)
    mel = overlap_add([p[1] for p in pieces], [s[1] for s in starts], frames)
    return np.clip(waveform, -1.0, 1.0), mel
