"""Optical flow between consecutive frames, quantised the way RegNet stores it.

Two OpenCV methods: ``tvl1`` (Dual TV-L1, what RegNet's features were computed with; about 0.3 s per
340x256 pair on two cores) and ``dis`` (DIS, medium preset; about 8 ms per pair, the CPU default).
Flow is computed on grey 340x256 frames, clipped to +-20 px and mapped to 0..255 by
``(f + 20) * 255 / 40``, then squashed to 224x224 like the RGB input.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

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
    bound = recipe.flow_bound
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))
    return np.round(scaled).astype(np.uint8)


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
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (N, 256, 340, 3) BGR -> (rgb uint8 (N, 3, 224, 224), flow uint8 (N, 2, 224, 224))."""
    size = (recipe.image_size, recipe.image_size)
    n = frames_bgr.shape[0]
    rgb = np.empty((n, 3, *size), dtype=np.uint8)
    flow = np.empty((n, 2, *size), dtype=np.uint8)
    for i, frame in enumerate(frames_bgr):
        rgb[i] = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    for i, f in enumerate(flow_pairs(frames_bgr, method)):
        flow[i] = cv2.resize(quantize_flow(f, recipe), size, interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    return rgb, flow
