"""Motion statistics of the optical flow, per frame: how fast the picture moves where, and how that motion
turns and changes from the frame before; whatever the objects look like and whichever way they move.

The generator's ``motion`` input (beside the TSN flow features): a picture's appearance does not say when
something hits something else, its motion does. Per frame, from the float flow the preprocess step computes
anyway (before it is quantised for the flow encoder):

1. the flow less its median (the camera's shake, a pan; over a quarter of the pixels, :data:`MEDIAN_STEP`);
2. per region (the whole frame and a 3 x 3 grid), over the pixels that move (faster than ``THRESHOLD`` px a
   frame): their mean velocity weighted by their speed (0 where none moves), and the share of pixels that
   move (:func:`frame_statistics`: 3 values a region, 30 a frame);
3. per region, what stays the same when the picture is turned (:func:`turning`): the speed, the moving
   share, the size of the velocity's change from the frame before, its dot product with the velocity before
   (negative where the motion reverses: a bounce off a floor and a rebound off a wall alike), the change of
   the speed and of the share (6 values a region, :data:`MOTION_WIDTH` a frame; 0 change at a video's first
   frame).

A frame's statistics need its flow and the one before: the preprocess step decodes one frame before a range
of windows, so that any range of windows gets exactly the numbers the whole video's windows get.
The numbers and what they lift: benchmarks/README.md, "Generalisation" and "A generator fed the motion
statistics".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: the grid of regions (besides the whole frame)
GRID = 3
REGIONS = 1 + GRID * GRID
#: px a frame: a pixel slower than this (after the median is taken off) counts as still
THRESHOLD = 0.5
#: px a frame per unit: velocities of a few px a frame come out near 1
VELOCITY_SCALE = 5.0
#: the moving share's unit: a body that covers a few per cent of the picture comes out near 1
SHARE_SCALE = 10.0
#: the camera's motion is the median of every MEDIAN_STEP-th pixel of every MEDIAN_STEP-th row (a quarter of the
#: frame's pixels: as good an estimate of a pan or a shake, and a frame's statistics cost about a fifth of its DIS
#: flow)
MEDIAN_STEP = 2
#: :func:`frame_statistics` per frame: velocity x, y and moving share per region
STATISTICS_WIDTH = 3 * REGIONS
#: :func:`turning` per frame: what the generator's ``motion`` input holds
MOTION_WIDTH = 6 * REGIONS


def _cells(height: int, width: int) -> list[tuple[slice, slice]]:
    """The grid's cells, row by row: rows and columns split at ``i * size // GRID``."""
    rows = [slice(i * height // GRID, (i + 1) * height // GRID) for i in range(GRID)]
    cols = [slice(j * width // GRID, (j + 1) * width // GRID) for j in range(GRID)]
    return [(r, c) for r in rows for c in cols]


def _from_cell_sums(cell_sums: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per grid cell sums (..., GRID * GRID, 4: speed-weighted x, y, the weights, moving pixels) of a height x width
    flow -> (..., :data:`STATISTICS_WIDTH`): per region (the whole frame, then the cells) the weighted mean velocity
    (0 where nothing moves) and the moving share."""
    cells = np.array([(r.stop - r.start) * (c.stop - c.start) for r, c in _cells(height, width)], dtype=np.float64)
    pixels = np.concatenate([[cells.sum()], cells])
    sums = np.concatenate([cell_sums.sum(-2, keepdims=True), cell_sums], axis=-2)
    weight = sums[..., 2]
    safe = np.where(weight > 0, weight, 1.0)
    out = np.stack(
        [
            np.where(weight > 0, sums[..., 0] / safe, 0.0) / VELOCITY_SCALE,
            np.where(weight > 0, sums[..., 1] / safe, 0.0) / VELOCITY_SCALE,
            sums[..., 3] / pixels * SHARE_SCALE,
        ],
        axis=-1,
    )
    return out.reshape(*out.shape[:-2], -1).astype(np.float32)


def frame_statistics(flow: np.ndarray) -> np.ndarray:
    """One frame's float flow (H, W, 2) px -> float32 (:data:`STATISTICS_WIDTH`,): per region (the whole frame,
    then the grid row by row) the speed-weighted mean velocity of the moving pixels and their share."""
    flow = np.asarray(flow, dtype=np.float32)
    sample = flow[::MEDIAN_STEP, ::MEDIAN_STEP]
    fx = flow[..., 0] - np.median(sample[..., 0])
    fy = flow[..., 1] - np.median(sample[..., 1])
    speed = np.hypot(fx, fy)
    weight = np.where(speed > THRESHOLD, speed, np.float32(0))
    height, width = speed.shape
    rows = [i * height // GRID for i in range(GRID)]
    cols = [j * width // GRID for j in range(GRID)]

    def per_cell(x: np.ndarray) -> np.ndarray:  # sums over the grid's cells, row by row (float64 accumulators)
        return np.add.reduceat(np.add.reduceat(x, rows, axis=0, dtype=np.float64), cols, axis=1).reshape(-1)

    sums = np.stack([per_cell(weight * fx), per_cell(weight * fy), per_cell(weight), per_cell(weight > 0)], axis=-1)
    return _from_cell_sums(sums, height, width)


#: frames whose statistics :func:`frame_statistics_torch` computes at once (in float64: ~6 MB of device memory each)
TORCH_CHUNK = 64


def frame_statistics_torch(flows: torch.Tensor) -> np.ndarray:
    """:func:`frame_statistics` of many frames' flows (N, H, W, 2) on a torch device (the GPU path's TV-L1):
    float32 (N, :data:`STATISTICS_WIDTH`) on the host; the median as numpy takes it, over the same pixels (the
    mean of the two middle values of an even count). :data:`TORCH_CHUNK` frames at a time."""
    return np.concatenate([_statistics_torch(flows[i : i + TORCH_CHUNK]) for i in range(0, len(flows), TORCH_CHUNK)])


def _statistics_torch(flows: torch.Tensor) -> np.ndarray:
    import torch

    n, height, width, _ = flows.shape
    flow = flows.double()
    ordered = flow[:, ::MEDIAN_STEP, ::MEDIAN_STEP].reshape(n, -1, 2).sort(dim=1).values
    k = ordered.shape[1]
    median = (ordered[:, (k - 1) // 2] + ordered[:, k // 2]) / 2
    flow = flow - median[:, None, None]
    speed = torch.hypot(flow[..., 0], flow[..., 1])
    weight = torch.where(speed > THRESHOLD, speed, torch.zeros_like(speed))
    terms = torch.stack([weight * flow[..., 0], weight * flow[..., 1], weight, (weight > 0).double()], -1)
    sums = torch.stack([terms[:, r, c].sum(dim=(1, 2)) for r, c in _cells(height, width)], dim=1)  # (N, 9, 4)
    return _from_cell_sums(sums.cpu().numpy(), height, width)


def turning(statistics: np.ndarray) -> np.ndarray:
    """Consecutive frames' statistics (N, :data:`STATISTICS_WIDTH`) -> float32 (N, :data:`MOTION_WIDTH`): per
    region the speed, the moving share, the size of the velocity's change from the frame before, its dot
    product with the velocity before, the change of the speed and of the share; the first frame's "before" is
    itself (no change)."""
    v = np.asarray(statistics, dtype=np.float32).reshape(len(statistics), REGIONS, 3)
    before = np.concatenate([v[:1], v[:-1]])
    speed = np.hypot(v[..., 0], v[..., 1])
    columns = [
        speed,
        v[..., 2],
        np.hypot(v[..., 0] - before[..., 0], v[..., 1] - before[..., 1]),
        v[..., 0] * before[..., 0] + v[..., 1] * before[..., 1],
        speed - np.hypot(before[..., 0], before[..., 1]),
        v[..., 2] - before[..., 2],
    ]
    return np.stack(columns, axis=-1).reshape(len(statistics), MOTION_WIDTH).astype(np.float32)


def still_motion(frames: int = 1) -> np.ndarray:
    """The motion of a still picture: nothing moves (float32 zeros (frames, :data:`MOTION_WIDTH`))."""
    return np.zeros((frames, MOTION_WIDTH), dtype=np.float32)
