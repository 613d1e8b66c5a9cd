"""Optical flow between consecutive frames, quantised the way RegNet stores it.

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


def flow_pairs(frames_bgr: np.ndarray, method: str = "dis") -> Iterator[np.ndarray]:
    """Flow from frame i to frame i + 1 for every frame; the last frame repeats the previous flow.

    Yields float32 (H, W, 2) per frame, N flows for N frames (a single frame gets zero flow).
    """
    n = frames_bgr.shape[0]
    if n == 1:
        yield np.zeros((*frames_bgr.shape[1:3], 2), dtype=np.float32)
        return
    solver = make_flow(method)
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames_bgr]
    last = None
    for i in range(n - 1):
        last = solver.calc(grey[i], grey[i + 1], None)
        yield last
    yield last


def network_inputs(
    frames_bgr: np.ndarray, method: str = "dis", recipe: Recipe = REGNET
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (N, 256, 340, 3) BGR -> (rgb uint8 (N, 3, 224, 224), flow uint8 (N, 2, 224, 224), motion float32
    (N, 60): s2s.motion's statistics of the float flow, the generator's motion input)."""
    from s2s.motion import frame_statistics, turning

    size = (recipe.image_size, recipe.image_size)
    flow = np.empty((frames_bgr.shape[0], 2, *size), dtype=np.uint8)
    statistics = []
    for i, f in enumerate(flow_pairs(frames_bgr, method)):
        flow[i] = cv2.resize(quantize_flow(f, recipe), size, interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        statistics.append(frame_statistics(f))
    return rgb_inputs(frames_bgr, recipe), flow, turning(np.stack(statistics))


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
    frames_bgr: np.ndarray, device: str, recipe: Recipe = REGNET, max_pairs: int = 256, fuse: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """:func:`network_inputs` with TV-L1 in PyTorch on ``device`` (s2s.tvl1), all frame pairs batched.

    Returns uint8 torch tensors on ``device``: rgb (N, 3, 224, 224), flow (N, 2, 224, 224), and the motion
    statistics (float32 (N, 60), numpy: a few numbers a frame, computed on the device). The frames go
    to the device once; grey conversion, flow, quantisation and resizing happen there, so a GPU caller
    can hand the tensors on without a copy to the host. ``max_pairs`` bounds the pairs solved at once
    (GPU memory: about 7 MB per pair of 340x256 while solving); ``fuse``: see :func:`s2s.tvl1.tvl1`.
    """
    ((rgb, flow, motion),) = network_inputs_torch_many([frames_bgr], device, recipe, max_pairs, fuse)
    return rgb, flow, motion


def network_inputs_torch_many(
    clips_bgr: list[np.ndarray], device: str, recipe: Recipe = REGNET, max_pairs: int = 256, fuse: bool | None = None
) -> list[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """:func:`network_inputs_torch` for several clips at once: the frame pairs of all of them are solved
    together (one batch fills a GPU better than many small ones); each clip's result is what it gets alone."""
    import torch

    from s2s.motion import frame_statistics_torch, still_motion, turning
    from s2s.tvl1 import bgr_to_grey, resize_bilinear, tvl1_pairs

    size = recipe.image_size
    frames = [torch.from_numpy(np.ascontiguousarray(f)).to(device) for f in clips_bgr]  # (N, H, W, 3) uint8
    greys = [bgr_to_grey(f) for f in frames]
    moving = [g for g in greys if g.shape[0] > 1]
    solved = (
        tvl1_pairs(torch.cat([g[:-1] for g in moving]), torch.cat([g[1:] for g in moving]), max_pairs, fuse=fuse)
        if moving
        else None
    )
    out, at = [], 0
    for f, grey in zip(frames, greys, strict=True):
        n = f.shape[0]
        if n == 1:
            flows = torch.zeros((1, *grey.shape[1:], 2), device=f.device)
            motion = still_motion()
        else:
            flows = solved[at : at + n - 1]
            at += n - 1
            flows = torch.cat([flows, flows[-1:]])  # the last frame repeats the previous flow
            motion = turning(frame_statistics_torch(flows))
        rgb = _round_u8(resize_bilinear(f.permute(0, 3, 1, 2).float(), size, size))
        quantized = torch.round(scale_flow(flows, recipe))
        out.append((rgb, _round_u8(resize_bilinear(quantized.permute(0, 3, 1, 2), size, size)), motion))
    return out


def _round_u8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).byte()
