"""The forms motion.py's statistics are handed to a generator in (probe.py --motion-form, motion.py combine --form):
per frame (N, 3 * R) statistics (per region: velocity x, y, moving share) -> (N, width) features in the RGB
features' place, or appended to the flow features."""

from __future__ import annotations

import numpy as np


def motion_block(motion: np.ndarray, width: int = 1024) -> np.ndarray:
    """(N, D) motion statistics -> (N, width): them, their change from the frame before (0 at the first), zeros
    (width 1024: what stands in the RGB features' place for a generator trained on them; 0: no zeros)."""
    change = np.concatenate([np.zeros_like(motion[:1]), np.diff(motion, axis=0)])
    return _padded(np.concatenate([motion, change], axis=1), width)


def _padded(block: np.ndarray, width: int) -> np.ndarray:
    """(N, D) -> (N, width) float32, zeros after the D columns (width 0: D)."""
    out = np.zeros((len(block), width or block.shape[1]), dtype=np.float32)
    out[:, : block.shape[1]] = block
    return out


def turning_block(motion: np.ndarray, width: int = 1024) -> np.ndarray:
    """(N, 3 * R) statistics (per region: velocity x, y, moving share) -> (N, width): per region the same whatever
    way the picture is turned: speed, moving share, the size of the velocity's change from the frame before, its
    dot product with the velocity before (negative where the motion reverses), the change of speed and of the
    moving share (6 * R; 0 at the first frame), then zeros. A ball's bounce off the floor and a puck's rebound off
    a side wall give the same numbers here; in motion_block's their signs sit on different axes."""
    v = motion.reshape(len(motion), -1, 3)
    before = np.concatenate([v[:1], v[:-1]])
    speed = np.hypot(v[..., 0], v[..., 1])
    cols = [
        speed,
        v[..., 2],
        np.hypot(*(v[..., :2] - before[..., :2]).transpose(2, 0, 1)),
        (v[..., :2] * before[..., :2]).sum(axis=-1),
        speed - np.hypot(before[..., 0], before[..., 1]),
        v[..., 2] - before[..., 2],
    ]
    return _padded(np.stack(cols, axis=-1).reshape(len(motion), -1), width)


def change_block(motion: np.ndarray, width: int = 1024) -> np.ndarray:
    """turning_block without the speed and its change: per region the moving share, the size of the velocity's
    change, its dot product with the velocity before and the share's change (4 * R), then zeros: the change of
    motion without the speed the training kinds' impacts peak at."""
    block = turning_block(motion, 0).reshape(len(motion), -1, 6)[..., [1, 2, 3, 5]]
    return _padded(block.reshape(len(motion), -1), width)


#: the least clip scale (motion units: 5 px a frame) scaled_block divides by, 2.5 px a frame: a still or noisy
#: clip's velocities are not blown up to the size of a moving body's
SCALE_FLOOR = 0.5


def clip_scale(motion: np.ndarray) -> float:
    """How fast the clip's bodies move: the 95th percentile over its frames of the fastest grid cell's speed
    (motion units; a cell's, since on a noisy picture the whole frame's mean velocity is diluted by the pixels
    that only seem to move), at least SCALE_FLOOR. The training clips' lie at 2.1-4.4 (5th-95th percentile), the
    first independent clips' at 0.7-2.8."""
    v = motion.reshape(len(motion), -1, 3)
    speed = np.hypot(v[:, 1:, 0], v[:, 1:, 1]).max(axis=1)
    return max(SCALE_FLOOR, float(np.percentile(speed, 95)))


def scaled_block(motion: np.ndarray, width: int = 1024) -> np.ndarray:
    """turning_block of the velocities divided by :func:`clip_scale`: a puck that keeps 5 px a frame and reverses
    gives the same dot product (-1) as a ball that reverses at 25 px a frame, where turning_block's grows with the
    square of the speed."""
    v = motion.reshape(len(motion), -1, 3).copy()
    v[..., :2] /= clip_scale(motion)
    return turning_block(v.reshape(len(motion), -1), width)


def package_block(motion: np.ndarray, width: int = 1024) -> np.ndarray:
    """s2s.motion's statistics as the package computes them (``package``'s files: already per region the speed,
    share, change, dot product, ...: 60 a frame), then zeros."""
    return _padded(motion, width)


FORMS = {
    "signed": motion_block, "turning": turning_block, "change": change_block, "scaled": scaled_block,
    "package": package_block,
}  # fmt: skip


def with_motion(z: dict, motion: np.ndarray, mode: str, form: str = "signed") -> dict:
    """A clip's arrays (``rgb``, ``flow``, ...) with the statistics ``motion`` in ``form`` (FORMS: "signed",
    :func:`motion_block`; "turning", :func:`turning_block`; "change", :func:`change_block`) in the RGB features'
    place (``mode`` "replace") or after the flow features ("append": 2048 + its width); "inputs": in the RGB
    features' place without the zeros after it, as `s2s train --generator-inputs motion,flow` feeds s2s.motion's
    statistics (60 + 1024)."""
    block = FORMS[form](motion, 0 if mode in ("append", "inputs") else 1024)
    if mode == "append":
        return z | {"flow": np.concatenate([z["flow"].astype(np.float32), block], axis=1)}
    return z | {"rgb": block}
