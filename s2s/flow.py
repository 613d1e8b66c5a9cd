"""Optical flow of each frame, per 1/21.5 s (s2s.video.Track names its two pictures), quantised the way RegNet
stores it.

Two OpenCV methods: ``tvl1`` (Dual TV-L1, what RegNet's features were computed with; about 0.3 s per
340x256 pair on two cores) and ``dis`` (DIS, medium preset; about 8 ms per pair, the CPU default).
Flow is computed on grey 340x256 frames, clipped to +-20 px and mapped to 0..255 by
``(f + 20) * 255 / 40``, then squashed to 224x224 like the RGB input. The float flow also gives each
frame's motion statistics (s2s.motion), the generator's ``motion`` input.

On a GPU, :func:`network_inputs_torch` computes the same inputs with TV-L1 in PyTorch (s2s.tvl1),
every frame pair of a window at once, and leaves them in GPU memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

from s2s.constants import REGNET, Recipe
from s2s.video import Track

FLOW_METHODS = ("dis", "tvl1")


def make_flow(method: str):
    """An OpenCV dense optical flow object for ``method``."""
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    if method == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create()
    raise ValueError(f"unknown flow method {method!r}; known: {list(FLOW_METHODS)}")


def quantize_flow(flow: np.ndarray, recipe: Recipe = REGNET) -> np.ndarray:
    """float (H, W, 2) pixels -> uint8 (H, W, 2): clip to +-bound, map to 0..255 (0 px -> 127.5)."""
    return np.round(scale_flow(flow, recipe)).astype(np.uint8)


def scale_flow(flow, recipe: Recipe = REGNET):
    """Pixels -> 0..255 floats: clip to +-bound, then map linearly (numpy arrays and torch tensors)."""
    bound = recipe.flow_bound
    return (flow.clip(-bound, bound) + bound) * (255.0 / (2 * bound))


def as_track(frames: np.ndarray | Track) -> Track:
    """A :class:`~s2s.video.Track` as it is; frames at the recipe's rate as :meth:`Track.even`."""
    return frames if isinstance(frames, Track) else Track.even(frames)


def flow_pairs(frames: np.ndarray | Track, method: str = "dis") -> Iterator[np.ndarray]:
    """The flow of every frame, per recipe period: float32 (H, W, 2) pixels, N flows for N frames.

    ``frames``: a :class:`~s2s.video.Track` (each frame's flow between the pictures it names, scaled), or frames
    at the recipe's rate (the flow from each to the next; the last frame repeats the previous flow; a single
    frame gets zero flow). Each distinct pair of pictures is solved once.
    """
    track = as_track(frames)
    pairs, rows = track.pairs()
    solver = make_flow(method) if len(pairs) else None
    grey: dict[int, np.ndarray] = {}
    solved: dict[int, np.ndarray] = {}

    def picture(i: int) -> np.ndarray:
        if i not in grey:
            grey[i] = cv2.cvtColor(track.pictures[i], cv2.COLOR_BGR2GRAY)
        return grey[i]

    still = np.zeros((*track.pictures.shape[1:3], 2), dtype=np.float32)
    for row, scale in zip(rows, track.scale, strict=True):
        if row < 0:
            yield still
            continue
        if row not in solved:  # the frames that share a pair are neighbours: only the last pair is kept
            solved = {row: solver.calc(picture(pairs[row, 0]), picture(pairs[row, 1]), None)}
        yield solved[row] if scale == 1 else solved[row] * np.float32(scale)


def network_inputs(
    frames: np.ndarray | Track, method: str = "dis", recipe: Recipe = REGNET, *, rgb: bool = True, motion: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Frames (N, 256, 340, 3) BGR at the recipe's rate, or a :class:`~s2s.video.Track` -> (rgb uint8 (N, 3,
    224, 224), flow uint8 (N, 2, 224, 224), motion float32 (N, 60): s2s.motion's statistics of the float flow, the
    generator's motion input). ``rgb`` / ``motion`` False: that one is not computed (None), for a caller that
    does not use it; the flow always is (the motion statistics are made of it)."""
    from s2s.motion import frame_statistics, turning

    track = as_track(frames)
    size = (recipe.image_size, recipe.image_size)
    flow = np.empty((len(track), 2, *size), dtype=np.uint8)
    statistics = []
    for i, f in enumerate(flow_pairs(track, method)):
        flow[i] = cv2.resize(quantize_flow(f, recipe), size, interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        if motion:
            statistics.append(frame_statistics(f))
    return (rgb_inputs(track.frames, recipe) if rgb else None, flow,
            turning(np.stack(statistics)) if motion else None)  # fmt: skip


def rgb_inputs(frames_bgr: np.ndarray, recipe: Recipe = REGNET) -> np.ndarray:
    """Frames (N, 256, 340, 3) BGR -> the RGB encoder's input, uint8 (N, 3, 224, 224)."""
    size = (recipe.image_size, recipe.image_size)
    rgb = np.empty((frames_bgr.shape[0], 3, *size), dtype=np.uint8)
    for i, frame in enumerate(frames_bgr):
        rgb[i] = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    return rgb


def still_inputs(picture_bgr: np.ndarray, recipe: Recipe = REGNET) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A still picture (1, 256, 340, 3) BGR -> (rgb uint8 (1, 3, 224, 224), flow uint8 (1, 2, 224, 224), motion
    float32 (1, 60)): no motion, as any flow method would find between a picture and itself, without computing
    it."""
    from s2s.motion import still_motion

    size = recipe.image_size
    still = quantize_flow(np.zeros((1, 1, 2), dtype=np.float32), recipe).reshape(1, 2, 1, 1)
    flow = np.ascontiguousarray(np.broadcast_to(still, (1, 2, size, size)))
    return rgb_inputs(picture_bgr, recipe), flow, still_motion()


def network_inputs_torch(
    frames: np.ndarray | Track, device: str, recipe: Recipe = REGNET, max_pairs: int = 256, fuse: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """:func:`network_inputs` with TV-L1 in PyTorch on ``device`` (s2s.tvl1), all frame pairs batched.

    Returns uint8 torch tensors on ``device``: rgb (N, 3, 224, 224), flow (N, 2, 224, 224), and the motion
    statistics (float32 (N, 60), numpy: a few numbers a frame, computed on the device). The pictures go
    to the device once; grey conversion, flow, quantisation and resizing happen there, so a GPU caller
    can hand the tensors on without a copy to the host. ``max_pairs`` bounds the pairs solved at once
    (GPU memory: about 7 MB per pair of 340x256 while solving); ``fuse``: see :func:`s2s.tvl1.tvl1`.
    """
    ((rgb, flow, motion),) = network_inputs_torch_many([frames], device, recipe, max_pairs, fuse)
    return rgb, flow, motion


def network_inputs_torch_many(
    clips: list[np.ndarray | Track],
    device: str,
    recipe: Recipe = REGNET,
    max_pairs: int = 256,
    fuse: bool | None = None,
    *,
    rgb: bool = True,
    motion: bool = True,
) -> list[tuple[torch.Tensor | None, torch.Tensor, np.ndarray | None]]:
    """:func:`network_inputs_torch` for several clips at once: the picture pairs of all of them are solved
    together (one batch fills a GPU better than many small ones); each clip's result is what it gets alone.
    ``rgb`` / ``motion`` False: not computed (None), as in :func:`network_inputs`."""
    import torch

    from s2s.motion import frame_statistics_torch, turning
    from s2s.tvl1 import bgr_to_grey, resize_bilinear, tvl1_pairs

    size = recipe.image_size
    tracks = [as_track(c) for c in clips]
    pictures = [torch.from_numpy(np.ascontiguousarray(t.pictures)).to(device) for t in tracks]  # (M, H, W, 3)
    greys = [bgr_to_grey(p) for p in pictures]
    pairs = [t.pairs() for t in tracks]
    firsts = [g[p[:, 0]] for g, (p, _) in zip(greys, pairs, strict=True) if len(p)]
    seconds = [g[p[:, 1]] for g, (p, _) in zip(greys, pairs, strict=True) if len(p)]
    solved = tvl1_pairs(torch.cat(firsts), torch.cat(seconds), max_pairs, fuse=fuse) if firsts else None
    out, at = [], 0
    for track, grey, picture, (pair, rows) in zip(tracks, greys, pictures, pairs, strict=True):
        # each frame's flow: its pair's, scaled to one recipe period; a frame without motion gets zero flow
        padded = torch.zeros((len(pair) + 1, *grey.shape[1:], 2), device=picture.device)
        if len(pair):
            padded[:-1] = solved[at : at + len(pair)]
            at += len(pair)
        flows = padded[torch.from_numpy(rows).to(picture.device)]  # row -1: the zero flow
        flows = flows * torch.from_numpy(track.scale).to(picture.device)[:, None, None, None]
        statistics = turning(frame_statistics_torch(flows)) if motion else None
        shown = picture[torch.from_numpy(track.shown.astype(np.int64)).to(picture.device)] if rgb else None
        resized = _round_u8(resize_bilinear(shown.permute(0, 3, 1, 2).float(), size, size)) if rgb else None
        quantized = torch.round(scale_flow(flows, recipe))
        out.append((resized, _round_u8(resize_bilinear(quantized.permute(0, 3, 1, 2), size, size)), statistics))
    return out


def _round_u8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).byte()
