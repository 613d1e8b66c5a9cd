"""s2s.motion: the motion statistics of the flow (the generator's motion input), on flows whose answer is known."""

from __future__ import annotations

import numpy as np
import torch

from s2s.motion import (
    GRID,
    MOTION_WIDTH,
    REGIONS,
    SHARE_SCALE,
    STATISTICS_WIDTH,
    VELOCITY_SCALE,
    frame_statistics,
    frame_statistics_torch,
    turning,
)

H, W = 90, 120  # cells of 30 x 40 px


def block_flow(velocity: tuple[float, float], rows=slice(35, 45), cols=slice(50, 60), pan=(0.0, 0.0)) -> np.ndarray:
    """A still picture (panned by ``pan``) with one 10 x 10 px block moving at ``velocity`` (x, y) px a frame."""
    flow = np.zeros((H, W, 2), dtype=np.float32) + np.array(pan, dtype=np.float32)
    flow[rows, cols] += np.array(velocity, dtype=np.float32)
    return flow


def per_region(values: np.ndarray, width: int) -> np.ndarray:
    return values.reshape(REGIONS, width)


def test_a_moving_block_gives_its_velocity_and_share_where_it_is():
    stats = per_region(frame_statistics(block_flow((4.0, -2.0))), 3)
    assert frame_statistics(block_flow((4.0, -2.0))).shape == (STATISTICS_WIDTH,)
    share = 100 / (H * W) * SHARE_SCALE
    np.testing.assert_allclose(stats[0], [4 / VELOCITY_SCALE, -2 / VELOCITY_SCALE, share], rtol=1e-5)
    centre = 1 + GRID * 1 + 1  # the middle cell (row 1, column 1) holds the block
    np.testing.assert_allclose(stats[centre], [0.8, -0.4, 100 / (30 * 40) * SHARE_SCALE], rtol=1e-5)
    assert not np.delete(stats, [0, centre], axis=0).any()  # nothing moves elsewhere


def test_the_camera_pan_is_taken_off_and_slow_pixels_are_still():
    # the whole picture pans 3 px right and 2 up; the block moves 4 px right of the picture
    panned = per_region(frame_statistics(block_flow((4.0, 0.0), pan=(3.0, -2.0))), 3)
    np.testing.assert_allclose(panned, per_region(frame_statistics(block_flow((4.0, 0.0))), 3), atol=1e-6)
    assert not frame_statistics(block_flow((0.3, 0.2))).any()  # under THRESHOLD: still
    assert not frame_statistics(np.zeros((H, W, 2), np.float32)).any()


def test_a_reversal_turns_the_same_way_whichever_way_the_picture_is_turned():
    """A bounce off a floor (y flips) and a rebound off a wall (x flips): the same speed, change and a negative
    dot product with the velocity before, in every region (on a square picture turned a quarter)."""
    square = (slice(40, 50), slice(40, 50))
    bounce = turning(np.stack([frame_statistics(_square_flow(v, square)) for v in ((0.0, 5.0), (0.0, -5.0))]))
    rebound = turning(np.stack([frame_statistics(_square_flow(v, square)) for v in ((5.0, 0.0), (-5.0, 0.0))]))
    assert bounce.shape == rebound.shape == (2, MOTION_WIDTH)
    np.testing.assert_allclose(bounce, rebound, atol=1e-6)
    whole = bounce[1, :6]  # speed, share, |change|, dot with before, speed change, share change
    np.testing.assert_allclose(whole[[0, 2, 3, 4, 5]], [1.0, 2.0, -1.0, 0.0, 0.0], atol=1e-6)
    first = bounce[0].reshape(REGIONS, 6)
    assert not first[:, [2, 4, 5]].any()  # the first frame turns from itself: no change
    np.testing.assert_allclose(first[0, 3], 1.0, atol=1e-6)  # its dot product with itself: the speed squared


def _square_flow(velocity, square) -> np.ndarray:
    flow = np.zeros((90, 90, 2), dtype=np.float32)
    flow[square] = velocity
    return flow


def test_the_torch_statistics_are_numpys(monkeypatch):
    monkeypatch.setattr("s2s.motion.TORCH_CHUNK", 2)  # 3 frames: two chunks
    rng = np.random.default_rng(0)
    flows = rng.normal(0, 2, (3, H, W, 2)).astype(np.float32)  # an even pixel count: the median of two values
    flows[1] = block_flow((6.0, 1.0), pan=(1.5, 0.5))
    want = np.stack([frame_statistics(f) for f in flows])
    np.testing.assert_allclose(frame_statistics_torch(torch.from_numpy(flows)), want, atol=1e-5)
