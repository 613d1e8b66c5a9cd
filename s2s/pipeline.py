"""The video -> sound chain as plain functions, shared by the Triton models and the in-process reference.

    preprocess(video bytes)  -> Windows: rgb uint8 [W, T, 3, 224, 224], flow uint8 [W, T, 2, 224, 224],
                                noise z fp32 [W, z_dim], duration_s
    (networks)                  tsn_rgb, tsn_flow -> generator -> vocoder, batched over W
    postprocess(waveforms [W, S], mels [W, 80, F], duration_s) -> waveform [N], mel [80, M]

Windows: T frames each (215 = 10 s at 21.5 fps by default). The last window of a video is filled by
looping its own frames, as RegNet loops clips shorter than 10 s; the output is trimmed back to the
video's duration. A window's T frames span T / fps seconds, while the vocoder returns 4 T * 256
samples (9.984 s for 10 s): each window's audio is resampled to its exact span before the windows are
joined, so sound stays aligned with the picture over long videos.

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
from s2s.video import VideoLimits, decode_video


@dataclass
class Windows:
    rgb: np.ndarray  #: uint8 (W, T, 3, 224, 224), BGR
    flow: np.ndarray  #: uint8 (W, T, 2, 224, 224)
    z: np.ndarray  #: float32 (W, z_dim)
    duration_s: float
    num_frames: int  #: real (unlooped) frames at the recipe's fps

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
) -> Windows:
    """Decode, resample, compute flow and cut into windows (raises VideoError on unusable input)."""
    decoded = decode_video(video, limits, recipe)
    rgb, flow = network_inputs(decoded.frames, flow_method, recipe)
    index = window_indices(decoded.num_frames, window_frames)
    return Windows(
        rgb=rgb[index], flow=flow[index], z=window_noise(bytes(video), index.shape[0], z_dim, seed),
        duration_s=decoded.duration_s, num_frames=decoded.num_frames,
    )  # fmt: skip


def postprocess(
    waveforms: np.ndarray, mels: np.ndarray, duration_s: float, recipe: Recipe = REGNET
) -> tuple[np.ndarray, np.ndarray]:
    """Join window outputs into one waveform (float32, N = round(duration * sr)) and one mel (80, M).

    ``waveforms`` (W, 4 T * hop) and ``mels`` (W, 80, 4 T); T is read from the shapes.
    """
    import soxr

    if waveforms.ndim != 2 or mels.ndim != 3 or waveforms.shape[0] != mels.shape[0]:
        raise ValueError(f"expected waveforms (W, S) and mels (W, 80, F), got {waveforms.shape} and {mels.shape}")
    mel_frames = mels.shape[2]
    window_s = mel_frames / recipe.mel_frames_per_frame / recipe.fps
    span = round(window_s * recipe.sample_rate)  # samples the window really covers (220500 for 10 s)
    parts = [soxr.resample(w.astype(np.float64), waveforms.shape[1], span, quality="HQ")[:span] for w in waveforms]
    total = max(1, round(duration_s * recipe.sample_rate))
    waveform = np.concatenate(parts)[:total].astype(np.float32)
    if waveform.size < total:
        waveform = np.pad(waveform, (0, total - waveform.size))
    mel_rate = mel_frames / window_s
    mel = np.concatenate(list(mels), axis=1)[:, : max(1, math.ceil(duration_s * mel_rate - 1e-6))]
    return np.clip(waveform, -1.0, 1.0), np.ascontiguousarray(mel, dtype=np.float32)
