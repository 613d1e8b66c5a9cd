"""The video -> sound chain as plain functions, shared by the Triton models and the in-process reference.

    preprocess(video bytes)  -> Windows: rgb uint8 [W, T, 3, 224, 224], flow uint8 [W, T, 2, 224, 224],
                                noise z fp32 [W, z_dim], and the output layout: spans, samples, mel_frames
    (networks)                  tsn_rgb, tsn_flow -> generator -> vocoder, batched over W
    postprocess(waveforms [W, S], mels [W, 80, F], layout) -> waveform [samples], mel [80, mel_frames]

Windows: T frames each (215 = 10 s at 21.5 fps by default). The last window of a video is filled by
looping its own frames, as RegNet loops clips shorter than 10 s; the output is trimmed back to the
video's duration. A window's T frames span T / fps seconds, while the vocoder returns 4 T * 256
samples (9.984 s for 10 s): each window's audio is resampled to its exact span before the windows are
joined, so sound stays aligned with the picture over long videos. Window k covers the samples
``[round(k * T / fps * sr), round((k + 1) * T / fps * sr))`` of the whole video, so any range of
windows, served on its own, joins exactly with its neighbours.

The noise z of each window is drawn from a generator seeded by the video's bytes (and a seed
parameter), so the same video always gives the same sound.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from s2s.constants import REGNET, Recipe
from s2s.flow import network_inputs
from s2s.video import VideoError, VideoLimits, decode_video


@dataclass
class Windows:
    rgb: np.ndarray  #: uint8 (W, T, 3, 224, 224), BGR
    flow: np.ndarray  #: uint8 (W, T, 2, 224, 224)
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


def window_noise(video: bytes, windows: int, z_dim: int, seed: int = 0) -> np.ndarray:
    """Reproducible per-video noise: float32 (windows, z_dim) ~ N(0, 1)."""
    digest = int.from_bytes(hashlib.sha256(video).digest()[:8], "little")
    return np.random.default_rng([seed, digest]).standard_normal((windows, z_dim)).astype(np.float32)


def preprocess(
    video: bytes,
    *,
    window_frames: int = REGNET.frames_per_window,
    flow_method: str = "dis",
    z_dim: int = 512,
    seed: int = 0,
    limits: VideoLimits = VideoLimits(),
    recipe: Recipe = REGNET,
    window_start: int = 0,
    window_count: int = 0,
    flow_device: str | None = None,
) -> Windows:
    """Decode, resample, compute flow and cut into windows (raises VideoError on unusable input).

    ``window_start`` / ``window_count`` (0: to the end) select a range of windows, so that a long video
    can be served window by window (progress, fairness between jobs); the pieces join to exactly what
    one request for the whole video returns: same frames, same flow at the seams, same noise.
    ``flow_device`` (a torch device, e.g. "cuda:0"): compute TV-L1 and the network inputs there with
    PyTorch (s2s.tvl1); ``rgb`` and ``flow`` are then torch tensors on that device.
    """
    if window_start < 0 or window_count < 0:
        raise VideoError(f"window_start and window_count must be >= 0, got {window_start} and {window_count}")
    need = (window_start + window_count) * window_frames + 1 if window_count else None
    decoded = decode_video(video, limits, recipe, max_frames=need)
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
    if flow_device is not None:
        if flow_method != "tvl1":
            raise ValueError(f"flow on a torch device is TV-L1 only, not {flow_method!r}")
        import torch

        from s2s.flow import network_inputs_torch

        rgb, flow = network_inputs_torch(decoded.frames[first:end], flow_device, recipe)
        rows = torch.from_numpy(rows).to(rgb.device)
    else:
        rgb, flow = network_inputs(decoded.frames[first:end], flow_method, recipe)
    window_s = window_frames / recipe.fps
    n = rows.shape[0]
    start_s, end_s = window_start * window_s, min((window_start + n) * window_s, decoded.duration_s)
    at = lambda t: round(t * recipe.sample_rate)  # noqa: E731 (sample index of a time, one rounding rule)
    spans = np.array([at((k + 1) * window_s) - at(k * window_s) for k in range(window_start, window_start + n)])
    mel_per_window = recipe.mel_frames(window_frames)
    mel_frames = math.ceil(end_s * mel_per_window / window_s - 1e-6) - window_start * mel_per_window
    z = window_noise(bytes(video), windows, z_dim, seed)[window_start : window_start + n]
    return Windows(
        rgb=rgb[rows - first], flow=flow[rows - first], z=z, duration_s=end_s - start_s, num_frames=total,
        total_windows=windows, window_start=window_start, spans=spans.astype(np.int32),
        samples=max(1, at(end_s) - at(start_s)), mel_frames=max(1, mel_frames),
    )  # fmt: skip


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
