"""TV-L1 in PyTorch (s2s.tvl1) against OpenCV's DualTVL1 and against known motion, on CPU (small frames
to keep the suite fast; the same code runs on CUDA: tests/test_gpu.py)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

import s2s.tvl1 as tv
from s2s.constants import REGNET
from s2s.export.specs import ExportOptions, build_exports
from s2s.flow import network_inputs, network_inputs_torch
from s2s.motion import MOTION_WIDTH
from s2s.synth import make_clip, make_still, make_video
from s2s.tvl1 import TVL1Params, _median, _median_network, _remap_cubic, bgr_to_grey, resize_bilinear, tvl1
from s2s.video import decode_video
from s2s.windowing import PreprocessOptions, decode_windows, preprocess, windows_on_device

H, W = 96, 128
MARGIN = 10  # ground truth is only meaningful away from the borders (content enters and leaves there)


def textured(seed: int, height: int = 2 * H, width: int = 2 * W) -> np.ndarray:
    """A smooth random texture (float 0..255), large enough to crop shifted views from."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (height, width)).astype(np.float32), (0, 0), 2.5)
    return cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX)


def shifted(base: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The centre crop of ``base`` moved by (dx, dy): flow from the unshifted view is exactly (dx, dy)."""
    moved = cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, dy]]), base.shape[::-1], flags=cv2.INTER_CUBIC)
    y0, x0 = (base.shape[0] - H) // 2, (base.shape[1] - W) // 2
    return np.clip(np.round(moved[y0 : y0 + H, x0 : x0 + W]), 0, 255).astype(np.uint8)


def opencv_tvl1(i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
    return np.stack([solver.calc(a, b, None) for a, b in zip(i0, i1, strict=True)])


def epe(a: np.ndarray, b: np.ndarray) -> float:
    """Mean end-point error over the interior."""
    inner = (slice(None), slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    return float(np.linalg.norm(a[inner] - b[inner], axis=-1).mean())


@pytest.fixture(scope="module")
def known_motion():
    """Pairs of textured frames with known sub-pixel translations, and both solvers' flows."""
    shifts = [(1.5, -0.7), (-3.2, 2.1), (0.3, 0.4), (5.6, 0.0)]
    i0 = np.stack([shifted(textured(k), 0, 0) for k in range(len(shifts))])
    i1 = np.stack([shifted(textured(k), dx, dy) for k, (dx, dy) in enumerate(shifts)])
    truth = np.stack([np.broadcast_to(np.float32(s), (H, W, 2)) for s in shifts])
    ours = tvl1(torch.from_numpy(i0), torch.from_numpy(i1)).numpy()
    return i0, i1, truth, ours


def test_known_motion_is_recovered_like_opencv(known_motion):
    i0, i1, truth, ours = known_motion
    ref = opencv_tvl1(i0, i1)
    assert ours.shape == ref.shape == (len(i0), H, W, 2) and ours.dtype == np.float32
    errors = {"opencv": epe(ref, truth), "torch": epe(ours, truth), "torch_vs_opencv": epe(ours, ref)}
    print(f"mean end-point error (px): {errors}")
    assert errors["opencv"] < 0.15, errors  # the reference itself tracks these shifts
    assert errors["torch"] < 0.15, errors
    assert errors["torch"] < errors["opencv"] + 0.02, errors  # no worse than OpenCV
    assert errors["torch_vs_opencv"] < 0.03, errors  # the same algorithm, to float rounding


def test_natural_looking_frames_match_opencv():
    """A generated clip's frames (a bouncing ball and a swinging stick on a textured background), at half size."""
    frames = make_clip(0, 0.5, 170, 128, kinds=("bounce", "strike")).frames[3:6]
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames])
    ref = opencv_tvl1(grey[:-1], grey[1:])
    ours = tvl1(torch.from_numpy(grey[:-1]), torch.from_numpy(grey[1:])).numpy()
    moving = np.linalg.norm(ref, axis=-1) > 0.5
    assert moving.any(), "the ball moves"
    on_ball = float(np.linalg.norm(ours - ref, axis=-1)[moving].mean())
    print(f"torch vs opencv EPE: all {epe(ours, ref):.4f} px, where it moves {on_ball:.4f} px")
    assert epe(ours, ref) < 0.05
    assert on_ball < 0.3


def test_pairs_of_a_batch_are_solved_as_if_alone(known_motion):
    """A pair that converges early is frozen while its batch-mates iterate on."""
    i0, i1, _, batched = known_motion
    for k in (0, 2):
        alone = tvl1(torch.from_numpy(i0[k : k + 1]), torch.from_numpy(i1[k : k + 1])).numpy()[0]
        np.testing.assert_allclose(batched[k], alone, atol=1e-4)


def test_building_blocks_match_opencv():
    rng = np.random.default_rng(1)
    image = textured(7, 64, 80)
    t = torch.from_numpy(image)[None]
    # pyramid step (fx = 0.8, OpenCV's rounded size) and upsampling to a given size
    down = cv2.resize(image, None, fx=0.8, fy=0.8)
    ours = resize_bilinear(t, *down.shape, 1 / 0.8, 1 / 0.8)[0].numpy()
    np.testing.assert_allclose(ours, down, atol=1e-3)
    up = cv2.resize(down, (80, 64))
    np.testing.assert_allclose(resize_bilinear(torch.from_numpy(down)[None], 64, 80)[0].numpy(), up, atol=1e-3)
    # median 5x5 with replicated borders: exact, both ways (sorting, and the selection network)
    np.testing.assert_array_equal(_median(t, 5)[0].numpy(), cv2.medianBlur(image, 5))
    np.testing.assert_array_equal(_median_network(t, 5)[0].numpy(), cv2.medianBlur(image, 5))
    # bicubic warp with a constant-zero border, positions on OpenCV's 1/32 px grid
    map_x = (np.arange(80, dtype=np.float32)[None] + rng.uniform(-3, 3, (64, 80))).astype(np.float32)
    map_y = (np.arange(64, dtype=np.float32)[:, None] + rng.uniform(-3, 3, (64, 80))).astype(np.float32)
    ref = cv2.remap(image, map_x, map_y, cv2.INTER_CUBIC)
    ours = _remap_cubic(t, torch.from_numpy(map_x)[None], torch.from_numpy(map_y)[None])[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=0.05)
    # grey conversion: bit-exact
    bgr = rng.integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    expected = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in bgr])
    np.testing.assert_array_equal(bgr_to_grey(torch.from_numpy(bgr)).numpy(), expected)


def test_network_inputs_and_tsn_flow_features_agree_with_opencv():
    frames = make_clip(0, 0.5, 170, 128, kinds=("bounce", "strike")).frames[:4]
    rgb, flow, motion = network_inputs(frames, "tvl1")
    rgb_t, flow_t, motion_t = network_inputs_torch(frames, "cpu", max_pairs=2)  # two batches of pairs
    assert rgb_t.dtype == flow_t.dtype == torch.uint8
    assert np.abs(rgb.astype(int) - rgb_t.numpy()).max() <= 1  # OpenCV's fixed-point vs float resize
    diff = np.abs(flow.astype(int) - flow_t.numpy())
    assert diff.mean() < 0.3, diff.mean()  # quantisation levels of 40/255 px
    # the motion statistics of the two TV-L1s: the same moving regions, velocities within a few hundredths
    assert motion_t.shape == motion.shape and motion.any()
    np.testing.assert_allclose(motion_t, motion, atol=0.05 * np.abs(motion).max())
    tsn_flow = build_exports(ExportOptions(), ("tsn_flow",))[0].module
    with torch.no_grad():
        a = tsn_flow(torch.from_numpy(flow)[None])[0]
        b = tsn_flow(flow_t[None])[0]
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    print(f"TSN flow features, cosine similarity per frame: {cosine.numpy().round(5)}")
    assert float(cosine.min()) > 0.99


def test_preprocess_on_a_torch_device_keeps_the_window_layout():
    video = make_video(duration_s=0.5, seed=5)  # 11 frames: windows of 4, the last one looping
    small = dataclasses.replace(REGNET, flow_width=170, flow_height=128)  # keeps the CPU run short
    options = PreprocessOptions(window_frames=4, overlap_frames=0, flow_method="tvl1", z_dim=8)
    cpu = preprocess(video, options, recipe=small)
    dev = preprocess(video, options, recipe=small, flow_device="cpu")
    assert cpu.rgb.shape[:2] == (3, 4)
    assert isinstance(dev.rgb, torch.Tensor) and isinstance(dev.flow, torch.Tensor)
    assert tuple(dev.rgb.shape) == cpu.rgb.shape and tuple(dev.flow.shape) == cpu.flow.shape
    assert np.abs(dev.rgb.numpy().astype(int) - cpu.rgb).max() <= 1
    assert np.abs(dev.flow.numpy().astype(int) - cpu.flow).mean() < 0.5
    assert isinstance(dev.motion, np.ndarray) and dev.motion.shape == cpu.motion.shape == (3, 4, MOTION_WIDTH)
    np.testing.assert_allclose(dev.motion, cpu.motion, atol=0.05 * np.abs(cpu.motion).max())
    np.testing.assert_array_equal(dev.layout, cpu.layout)
    np.testing.assert_array_equal(dev.z, cpu.z)
    with pytest.raises(ValueError, match="TV-L1 only"):
        preprocess(video, PreprocessOptions(window_frames=4, z_dim=8), flow_device="cpu")


def test_parameters_are_opencvs_defaults():
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
    p = TVL1Params()
    assert (p.tau, p.lambda_, p.theta, p.epsilon, p.scale_step) == pytest.approx(
        (solver.getTau(), solver.getLambda(), solver.getTheta(), solver.getEpsilon(), solver.getScaleStep())
    )
    assert (p.nscales, p.warps, p.inner_iterations, p.outer_iterations, p.median_filtering) == (
        solver.getScalesNumber(), solver.getWarpingsNumber(), solver.getInnerIterations(),
        solver.getOuterIterations(), solver.getMedianFiltering(),
    )  # fmt: skip
    assert solver.getGamma() == 0 and not solver.getUseInitialFlow()


def test_median_network_is_a_median():
    """The selection network (Batcher's sort pruned to the middle output) on ties, runs and random values."""
    rng = np.random.default_rng(3)
    for k in (3, 5):
        program, _ = tv._median_program(k * k)
        assert len(program) < 2 * k * k * k  # pruned: far fewer than a full sort's comparisons
        for u in (rng.integers(0, 3, (2, 9, 11)), rng.normal(size=(2, 13, 8)), np.arange(60).reshape(1, 6, 10)):
            t = torch.from_numpy(u.astype(np.float32))
            np.testing.assert_array_equal(_median_network(t, k).numpy(), _median(t, k).numpy())


def test_fused_solver_gives_the_eager_result(known_motion):
    """The compiled inner iteration and median step (what CUDA runs by default) compute what the eager
    ones compute, here on the CPU; a pair that converges is still frozen, and the loop looks at convergence
    every CHECK_EVERY iterations without changing the result."""
    i0, i1, _, eager = known_motion
    assert tv.compile_ahead("cpu", H, W) == {}  # what a GPU preprocess instance does while loading
    assert set(tv._FUSED) == {"step", "median"}
    stats: dict = {}
    fused = tvl1(torch.from_numpy(i0), torch.from_numpy(i1), fuse=True, stats=stats).numpy()
    assert {name: f.failure for name, f in tv._FUSED.items()} == {"step": None, "median": None}
    np.testing.assert_allclose(fused, eager, atol=1e-4)
    levels = stats["inner_iterations"]
    assert len(levels) == TVL1Params().nscales and levels[-1]["size"] == [H, W]
    assert all(0 < level["iterations"] <= 5 * 10 * 30 for level in levels)


@pytest.mark.parametrize("fps", [15.0, 59.94])
def test_a_decoded_tracks_pairs_are_solved_like_opencvs(fps):
    """A video at another rate (pictures shown twice at 15 fps; at 60 fps flow to pictures between the frames):
    the torch path solves each frame's own pair of pictures and scales it to one recipe period, as the CPU path."""
    small = dataclasses.replace(REGNET, flow_width=170, flow_height=128)  # keeps the CPU run short
    track = decode_video(make_video(duration_s=0.4, fps=fps), recipe=small).track
    assert not np.all(track.scale == 1)  # the check proves nothing at the recipe's rate
    rgb, flow, motion = network_inputs(track, "tvl1", small)
    rgb_t, flow_t, motion_t = network_inputs_torch(track, "cpu", small, max_pairs=3)
    assert rgb_t.shape == rgb.shape and np.abs(rgb.astype(int) - rgb_t.numpy()).max() <= 1
    assert np.abs(flow.astype(int) - flow_t.numpy()).mean() < 0.3
    assert motion.any()
    np.testing.assert_allclose(motion_t, motion, atol=0.05 * np.abs(motion).max())


def test_clips_solved_together_get_what_each_gets_alone():
    """windows_on_device: the frame pairs of several clips in one batch, each clip's windows as if alone."""
    small = dataclasses.replace(REGNET, flow_width=170, flow_height=128)  # keeps the CPU run short
    options = PreprocessOptions(window_frames=3, flow_method="tvl1", z_dim=8)
    clips = [decode_windows(make_video(duration_s=d, seed=s), options, recipe=small) for d, s in ((0.2, 1), (0.3, 2))]
    together = windows_on_device(clips, options, "cpu", small)
    for clip, both in zip(clips, together, strict=True):
        (alone,) = windows_on_device([clip], options, "cpu", small)
        assert torch.equal(both.rgb, alone.rgb)
        assert (both.flow.int() - alone.flow.int()).abs().max() <= 1  # float rounding at a quantisation edge
        np.testing.assert_array_equal(both.z, alone.z)
        np.testing.assert_allclose(both.motion, alone.motion, atol=1e-5)
    # a still among them: its picture's inputs, no motion, exactly what the CPU path gives it
    still = decode_windows(make_still(".png"), options, duration_s=0.3, recipe=small)
    _, with_still, _ = windows_on_device([clips[0], still, clips[1]], options, "cpu", small)
    on_cpu = preprocess(make_still(".png"), options, duration_s=0.3, recipe=small)
    np.testing.assert_array_equal(with_still.rgb.numpy(), on_cpu.rgb)
    np.testing.assert_array_equal(with_still.flow.numpy(), on_cpu.flow)
    np.testing.assert_array_equal(with_still.motion, on_cpu.motion)
    assert not on_cpu.motion.any()
    # an ensemble that uses no RGB frames (a generator fed motion,flow) gets none, and the same flow and motion
    (without_rgb,) = windows_on_device([clips[1]], options, "cpu", small, outputs={"flow", "motion"})
    assert without_rgb.rgb is None and torch.equal(without_rgb.flow, together[1].flow)
    np.testing.assert_array_equal(without_rgb.motion, together[1].motion)
    (without_motion,) = windows_on_device([clips[1]], options, "cpu", small, outputs={"rgb", "flow"})
    assert without_motion.motion is None and torch.equal(without_motion.rgb, together[1].rgb)
