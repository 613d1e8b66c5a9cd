"""The pipeline without a server: decoding, resampling, flow, windows, joining the windows' audio."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from s2s.constants import REGNET
from s2s.errors import OptionError
from s2s.flow import flow_pairs, make_flow, network_inputs, quantize_flow, rgb_inputs
from s2s.motion import MOTION_WIDTH
from s2s.synth import (
    CONTAINERS,
    STILL_FORMATS,
    Clip,
    encode_clip,
    make_audio_only,
    make_clip,
    make_still,
    make_video,
    make_zero_frame_video,
)
from s2s.video import STILL_DURATION_S, VideoError, VideoLimits, decode_video
from s2s.windowing import (
    PreprocessOptions,
    Windows,
    distinct_rows,
    join_ranges,
    postprocess,
    preprocess,
    seam_times,
    window_count,
    window_indices,
    window_noise,
)


# ------------------------------------------------------------------------------------------- decode
@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_decodes_every_container_at_the_recipe_rate(container):
    video = decode_video(make_video(duration_s=2.0, fps=25.0, container=container))
    assert video.num_frames == math.ceil(2.0 * REGNET.fps)  # 43 frames at 21.5 fps
    assert video.frames.shape[1:] == (REGNET.flow_height, REGNET.flow_width, 3)
    assert video.frames.dtype == np.uint8
    assert abs(video.duration_s - 2.0) < 0.06


def test_resampling_picks_frames_by_timestamp():
    """30 fps source: target frame k shows the source frame at or before k / 21.5 s."""
    clip = make_clip(0, 1.2, 340, 256, fps=30.0, kinds=("bounce", "strike"))  # a ball and a stick move throughout
    video = decode_video(encode_clip(clip))
    for k in (0, 5, 13, 20):
        source = math.floor(k / REGNET.fps * 30.0 + 1e-9)
        expected, later = clip.frames[source].astype(int), clip.frames[source + 3].astype(int)
        moving = np.abs(expected - later).sum(axis=-1) > 60  # pixels that change within three source frames
        assert moving.sum() > 50, f"frame {k}: nothing moves, the check would prove nothing"
        error = np.abs(video.frames[k].astype(int) - expected)[moving].mean()
        others = np.abs(video.frames[k].astype(int) - later)[moving].mean()
        assert error < others, f"frame {k}: wrong source frame chosen"


def _crossing_block(fps: float, speed_px_s: float, seconds: float = 2.0) -> Clip:
    """A textured block crossing a still textured background at a constant speed, drawn at ``fps``."""
    rng = np.random.default_rng(0)
    h, w = REGNET.flow_height, REGNET.flow_width
    background = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2.0)
    block = cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 1.5)
    layer, mask = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
    layer[96:160, 40:104], mask[96:160, 40:104] = block, 1.0
    frames = []
    for i in range(round(seconds * fps)):  # moved by sub-pixel amounts: the same speed between any two frames
        move = np.float32([[1, 0, speed_px_s * i / fps], [0, 1, 0]])
        shown = cv2.warpAffine(mask, move, (w, h))[..., None]
        frame = cv2.warpAffine(layer, move, (w, h)) + (1 - shown) * background
        frames.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
    audio = np.zeros(round(seconds * REGNET.sample_rate), dtype=np.float32)
    return Clip(np.stack(frames), audio, np.zeros(0), fps, REGNET.sample_rate, seed=0)


@pytest.mark.parametrize("fps", [15.0, 21.5, 29.97, 59.94])
def test_flow_is_the_motion_over_one_recipe_period_at_any_frame_rate(fps):
    """A block crossing at a constant speed: every frame's flow is the block's motion over 1 / 21.5 s whatever the
    stream's rate - no still frames where a 15 fps picture is shown twice, no jumps where a 30 or 60 fps one is
    skipped (either would beat at the difference of the rates, heard as spurious events)."""
    speed = 86.0  # px/s: 4 px per recipe period
    video = decode_video(encode_clip(_crossing_block(fps, speed)))
    shifts = np.array([np.median(f[..., 0][np.abs(f[..., 0]) > 1]) for f in flow_pairs(video.track)])
    np.testing.assert_allclose(shifts[1:-1], speed / REGNET.fps, rtol=0.12)
    speeds = network_inputs(video.track)[2][2:-2, 0]  # s2s.motion's whole-picture speed: steady
    assert speeds.std() < 0.1 * speeds.mean(), speeds
    if fps < REGNET.fps:  # the check sees pictures shown twice, whose flow to each other is none
        assert any(np.array_equal(a, b) for a, b in zip(video.frames, video.frames[1:], strict=False))
    if fps > REGNET.fps:  # and pictures between the frames, which the flow goes to
        assert len(video.track.pictures) > video.num_frames


def test_variable_frame_rate_is_resampled_evenly():
    video = decode_video(make_video(duration_s=2.0, fps=24.0, variable_frame_rate=True))
    assert video.num_frames == math.ceil(video.duration_s * REGNET.fps - 1e-6)
    assert 1.9 < video.duration_s < 2.2


def test_rotated_phone_video_is_turned_upright():
    plain = decode_video(make_video(duration_s=0.5, width=320, height=240))
    rotated = decode_video(make_video(duration_s=0.5, width=320, height=240, rotation=-90))
    assert rotated.rotation == 270 and plain.rotation == 0
    # the upright picture is the stored one turned 90 degrees clockwise, then squashed to 340x256
    first = make_clip(0, 0.5, 320, 240, fps=25.0).frames[0]  # what make_video encoded
    upright = cv2.resize(np.rot90(first, k=-1), (REGNET.flow_width, REGNET.flow_height))
    assert np.abs(rotated.frames[0].astype(int) - upright.astype(int)).mean() < 12
    assert np.abs(plain.frames[0].astype(int) - upright.astype(int)).mean() > 20


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty input"),
        (np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(), "cannot read the input"),
        (make_audio_only(), "no video stream in the input (streams found: audio)"),
        (make_zero_frame_video(), "no decodable frames"),
        (make_video(duration_s=1.0)[:1500], "cannot read the input"),
    ],
    ids=["empty", "random-bytes", "audio-only", "zero-frames", "truncated"],
)
def test_unusable_input_is_a_clear_video_error(data, message):
    with pytest.raises(VideoError) as info:
        decode_video(data)
    assert message in str(info.value)


def test_limits_name_the_value():
    with pytest.raises(VideoError, match=r"resolution too large: 320x240"):
        decode_video(make_video(duration_s=0.5), VideoLimits(max_width=300))
    with pytest.raises(VideoError, match=r"video too long: 3\.00 s \(limit 2 s\)"):
        decode_video(make_video(duration_s=3.0), VideoLimits(max_duration_s=2.0))
    with pytest.raises(VideoError, match=r"input too large"):
        decode_video(make_video(duration_s=0.5), VideoLimits(max_bytes=100))


# --------------------------------------------------------------------------------------------- flow
def test_quantization_matches_regnet():
    flow = np.array([[[0.0, -20.0], [20.0, 35.0]]], dtype=np.float32)
    q = quantize_flow(flow)
    assert q.tolist() == [[[128, 0], [255, 255]]]


@pytest.mark.parametrize("method", ["dis", "tvl1"])
def test_flow_sees_a_known_shift(method):
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (64, 80), dtype=np.uint8), (5, 5), 1.5)
    shifted = np.roll(texture, 3, axis=1)  # content moves 3 px to the right
    flow = make_flow(method).calc(texture, shifted, None)
    inner = flow[8:-8, 8:-8]
    assert abs(np.median(inner[..., 0]) - 3.0) < 0.5 and abs(np.median(inner[..., 1])) < 0.5


def test_network_inputs_shapes_and_last_flow_repeats():
    frames = decode_video(make_video(duration_s=0.5)).frames
    rgb, flow, motion = network_inputs(frames, "dis")
    n = frames.shape[0]
    assert rgb.shape == (n, 3, 224, 224) and flow.shape == (n, 2, 224, 224) and motion.shape == (n, MOTION_WIDTH)
    assert rgb.dtype == flow.dtype == np.uint8 and motion.dtype == np.float32
    np.testing.assert_array_equal(flow[-1], flow[-2])
    assert motion.any()  # the clip moves
    # the last frame repeats the flow before it: its motion has not changed (s2s.motion.turning's change columns)
    np.testing.assert_array_equal(motion[-1].reshape(-1, 6)[:, 2], 0)
    assert len(list(flow_pairs(frames[:1]))) == 1


# ------------------------------------------------------------------------------------------ windows
def test_windows_loop_the_last_partial_window():
    index = window_indices(5, 4)
    assert index.tolist() == [[0, 1, 2, 3], [4, 4, 4, 4]]
    assert window_indices(3, 7).tolist() == [[0, 1, 2, 0, 1, 2, 0]]
    assert window_indices(8, 4).shape == (2, 4)


def test_overlapping_windows_start_every_stride_and_share_their_frames():
    assert window_indices(10, 4, 2).tolist() == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]
    assert window_indices(9, 4, 2).tolist()[-1] == [6, 7, 8, 6], "the last window loops its own frames"
    assert [window_count(n, 215, 21) for n in (1, 215, 216, 409, 410)] == [1, 1, 2, 2, 3]
    assert window_count(10, 4, 0) == 3 and window_count(4, 4, 2) == 1
    assert PreprocessOptions().overlap_frames == REGNET.overlap_frames
    assert PreprocessOptions(window_frames=20).overlap_frames == 10, "the default is at most half a window"
    with pytest.raises(OptionError, match="half a window"):
        PreprocessOptions(window_frames=20, overlap_frames=11)
    # the hand-over points: the middle of each overlap, the boundaries themselves when windows butt
    np.testing.assert_allclose(seam_times(25.0, PreprocessOptions()), [(194 + 10.5) / 21.5, (388 + 10.5) / 21.5])
    np.testing.assert_allclose(seam_times(25.0, PreprocessOptions(overlap_frames=0)), [10.0, 20.0])
    assert seam_times(9.0, PreprocessOptions()).size == 0


def test_each_distinct_frame_goes_to_the_encoders_once():
    """distinct_rows keeps a window's distinct frames once; its index rebuilds every frame of the window."""
    for rows in (window_indices(3, 7), window_indices(10, 4), np.zeros((2, 5), dtype=int), window_indices(8, 4)):
        kept, index = distinct_rows(rows)
        assert index.dtype == np.int32 and index.shape == rows.shape
        np.testing.assert_array_equal(np.take_along_axis(kept, index, axis=1), rows)
        assert kept.shape[1] == max(len(set(row)) for row in rows)
    assert distinct_rows(window_indices(3, 7))[0].tolist() == [[0, 1, 2]]  # 3 frames computed, not 7
    assert distinct_rows(window_indices(10, 4))[0].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 8, 9]]


def test_noise_is_reproducible_per_video():
    a = window_noise(b"video-a", 2, 16)
    np.testing.assert_array_equal(a, window_noise(b"video-a", 2, 16))
    assert not np.allclose(a, window_noise(b"video-b", 2, 16))
    assert not np.allclose(a, window_noise(b"video-a", 2, 16, seed=1))
    assert not np.allclose(a[0], a[1])


@pytest.mark.parametrize("duration", [0.4, 10.0, 23.7])
@pytest.mark.parametrize("overlap", [0, REGNET.overlap_frames])
def test_postprocess_trims_to_the_video_and_keeps_windows_in_place(duration, overlap):
    """The layout preprocess computes puts window k at exactly k S / fps seconds (S = T - overlap) and ends
    at the video's end."""
    t = REGNET.frames_per_window
    options = PreprocessOptions(z_dim=4, overlap_frames=overlap)
    windows = preprocess(make_video(duration_s=duration, fps=10.0, width=64, height=48), options)
    true_duration = windows.duration_s
    assert windows.num_windows == window_count(windows.num_frames, t, overlap)
    assert windows.samples == round(true_duration * REGNET.sample_rate) and windows.offset.tolist() == [0, 0]
    starts = [round(k * options.stride_frames / REGNET.fps * REGNET.sample_rate) for k in range(windows.num_windows)]
    assert windows.layout[:, 0, 0].tolist() == starts
    assert all(windows.layout[:, 0, 1] == REGNET.sample_rate * 10) and all(windows.layout[:, 1, 1] == 4 * t)
    assert windows.layout[0, :, 2].tolist() == [0, 0] and windows.layout[-1, :, 3].tolist() == [0, 0]
    mel_frames = REGNET.mel_frames(t)
    # each window: a click near its start, so we can see where it lands
    waves = np.zeros((windows.num_windows, REGNET.samples(t)), dtype=np.float32)
    waves[:, 100] = 1.0
    mels = np.random.default_rng(0).random((windows.num_windows, 80, mel_frames)).astype(np.float32)
    waveform, mel = postprocess(waves, mels, windows.layout, windows.samples, windows.mel_frames)
    assert waveform.shape == (windows.samples,)
    assert mel.shape == (80, math.ceil(true_duration * mel_frames / REGNET.window_s - 1e-6))
    for w, start in enumerate(starts):
        click = start + 100  # stretched by 220500/220160: still within a sample or two
        if click < waveform.size:
            assert abs(int(np.argmax(np.abs(waveform[click - 50 : click + 50]))) - 50) <= 2, w


def test_overlapping_windows_cross_fade_without_a_level_step():
    """Windows that make the same sound where they overlap (as the vocoders do: the iSTFT vocoder reads its noise
    at the video's frame) keep its level through each overlap (linear fades sum to one: an equal-power fade would
    swell it by 3 dB in the middle), the joined sound is that sound there, each window alone is heard past the
    fade, and a mel the same in every window stays that mel."""
    import soxr
    from scipy.signal import butter, sosfilt

    t = REGNET.frames_per_window
    options = PreprocessOptions(z_dim=4)
    windows = preprocess(make_video(duration_s=25.0, fps=5.0, width=64, height=48), options)
    assert windows.num_windows == 3
    # one band-limited noise at the vocoder's rate; window k makes the part its frames span (so its starts, rounded
    # to the sample, are within half a sample of each other's: the band keeps that from mattering)
    stride = REGNET.samples(options.stride_frames)
    sound = sosfilt(butter(6, 3000, fs=REGNET.sample_rate, output="sos"),
                    np.random.default_rng(1).standard_normal(2 * stride + REGNET.samples(t)))  # fmt: skip
    sound *= 0.1 / np.sqrt(np.mean(sound**2))
    waves = np.stack([sound[k * stride : k * stride + REGNET.samples(t)] for k in range(3)]).astype(np.float32)
    mels = np.full((3, 80, REGNET.mel_frames(t)), 0.6, dtype=np.float32)
    waveform, mel = postprocess(waves, mels, windows.layout, windows.samples, windows.mel_frames)
    np.testing.assert_allclose(mel, 0.6, atol=1e-6)
    block = REGNET.sample_rate // 10
    levels = [np.sqrt(np.mean(waveform[i : i + block] ** 2)) for i in range(0, waveform.size - block, block)]
    assert min(levels) > 0.085 and max(levels) < 0.115, (min(levels), max(levels))
    for k in (1, 2):
        start, span, fade_in, _ = windows.layout[k, 0]
        own = soxr.resample(waves[k].astype(np.float64), waves.shape[1], int(span), quality="HQ")
        before = soxr.resample(waves[k - 1].astype(np.float64), waves.shape[1], int(span), quality="HQ")
        middle = slice(fade_in // 2 - 500, fade_in // 2 + 500)
        heard = waveform[start + middle.start : start + middle.stop]
        shift = start - windows.layout[k - 1, 0, 0]
        in_middle = np.sqrt(np.mean(heard.astype(np.float64) ** 2)) / np.sqrt(np.mean(own[middle] ** 2))
        assert abs(20 * np.log10(in_middle)) < 0.2, in_middle  # the level kept where both are heard at half
        for source in (own[middle], before[shift + middle.start : shift + middle.stop]):
            assert np.corrcoef(heard, source)[0, 1] > 0.99
        outside = slice(fade_in + 2000, fade_in + 3000)  # past the fade: this window alone
        assert np.corrcoef(waveform[start + outside.start : start + outside.stop], own[outside])[0, 1] > 0.999


def test_postprocess_refuses_inconsistent_shapes():
    with pytest.raises(ValueError, match="expected waveforms"):
        postprocess(np.zeros((2, 100)), np.zeros((2, 80, 4)), np.zeros((1, 2, 4), dtype=np.int32), 10, 4)
    with pytest.raises(ValueError, match="must start with the video's first window"):
        join_ranges([(np.zeros(10, np.float32), np.zeros((80, 4), np.float32), (5, 2))])


def _sound_of(windows: Windows, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Postprocess of made-up network outputs, the same for a window whichever request it is in."""
    rows = []
    for k in range(windows.window_start, windows.window_start + windows.num_windows):
        rng = np.random.default_rng([seed, k])
        rows.append((rng.uniform(-0.9, 0.9, REGNET.samples(20)), rng.random((80, REGNET.mel_frames(20)))))
    waves, mels = (np.stack([r[i] for r in rows]).astype(np.float32) for i in (0, 1))
    return postprocess(waves, mels, windows.layout, windows.samples, windows.mel_frames)


@pytest.mark.parametrize("fps", [25.0, 15.0, 59.94])
def test_window_ranges_join_into_the_whole_video(fps):
    """Window-by-window preprocessing gives the same frames, flow at the seams and noise as one pass, and
    their sounds, overlap-added at their offsets, are exactly the whole request's (at frame rates whose flow
    goes to pictures shown twice, or to pictures between the frames)."""
    video = make_video(duration_s=2.0, fps=fps)
    options = PreprocessOptions(window_frames=20, overlap_frames=4, z_dim=8)
    whole = preprocess(video, options)
    assert whole.total_windows == whole.num_windows == window_count(whole.num_frames, 20, 4) == 3
    pieces = [preprocess(video, options, window_start=k, window_count=1) for k in range(3)]
    for name in ("rgb", "flow", "motion"):  # every frame of every window, looped as the generator loops features
        looped = np.concatenate([p.looped(getattr(p, name)) for p in pieces])
        np.testing.assert_array_equal(looped, whole.looped(getattr(whole, name)))
    np.testing.assert_array_equal(np.concatenate([p.z for p in pieces]), whole.z)
    # the motion of a piece's first frame turns from the frame before it, which the piece decoded for it
    assert np.abs(pieces[1].motion[0, 0].reshape(-1, 6)[:, 2]).max() > 0
    # windows start every 16 frames and share 4 with the next
    np.testing.assert_array_equal(whole.looped(whole.flow)[1, :4], whole.looped(whole.flow)[0, 16:])
    # the last window alone sends its distinct frames once; in the whole request it pads to its neighbours'
    last = whole.num_frames - 32
    assert 4 < last < 20 and pieces[2].rgb.shape[1] == last and whole.rgb.shape[1] == 20
    np.testing.assert_array_equal(pieces[2].frame_index[0], np.arange(20) % last)
    # each piece's layout is the whole one's, moved to where the piece starts
    for k, piece in enumerate(pieces):
        np.testing.assert_array_equal(piece.layout[0, :, 0] + piece.offset, whole.layout[k, :, 0])
        np.testing.assert_array_equal(piece.layout[0, :, 1:], whole.layout[k, :, 1:])
    assert pieces[-1].offset[0] + pieces[-1].samples == whole.samples
    assert pieces[-1].offset[1] + pieces[-1].mel_frames == whole.mel_frames
    sound = _sound_of(whole)
    for ranges in ([(0, 1), (1, 1), (2, 1)], [(0, 2), (2, 1)], [(0, 1), (1, 0)]):
        parts = [preprocess(video, options, window_start=a, window_count=n) for a, n in ranges]
        joined = join_ranges([(*_sound_of(p), p.offset) for p in parts])
        np.testing.assert_array_equal(joined[0], sound[0])
        np.testing.assert_array_equal(joined[1], sound[1])
    tail = preprocess(video, options, window_start=1)  # count 0: to the end
    np.testing.assert_array_equal(tail.flow, whole.flow[1:])
    np.testing.assert_array_equal(tail.frame_index, whole.frame_index[1:])
    with pytest.raises(VideoError, match="window_start 3 is past the video's 3 window"):
        preprocess(video, options, window_start=3, window_count=1)


def test_preprocess_computes_the_rgb_frames_and_the_motion_only_for_a_caller_that_uses_them(monkeypatch):
    """An ensemble whose generator is fed rgb,flow asks preprocess for no motion, one fed motion,flow for no RGB
    frames: those are then not computed, and what is computed is what a caller of every output gets."""
    import s2s.flow
    import s2s.motion

    video = make_video(duration_s=1.0, fps=15.0)
    options = PreprocessOptions(window_frames=10, overlap_frames=2, z_dim=8)
    whole = preprocess(video, options)
    calls = {"rgb": 0, "motion": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(s2s.flow, "rgb_inputs", counted("rgb", s2s.flow.rgb_inputs))
    monkeypatch.setattr(s2s.motion, "frame_statistics", counted("motion", s2s.motion.frame_statistics))
    for asked in ({"rgb", "flow", "frame_index"}, {"motion", "flow"}, {"flow"}):
        calls.update(rgb=0, motion=0)
        windows = preprocess(video, options, outputs=asked)
        for name in ("rgb", "motion"):
            if name in asked:
                np.testing.assert_array_equal(getattr(windows, name), getattr(whole, name))
                assert calls[name] > 0
            else:
                assert getattr(windows, name) is None and calls[name] == 0, f"{name} computed unasked"
        np.testing.assert_array_equal(windows.flow, whole.flow)
        np.testing.assert_array_equal(windows.frame_index, whole.frame_index)
        assert windows.num_windows == whole.num_windows
    still = preprocess(make_still(".png"), options, duration_s=1.0, outputs={"flow", "motion"})
    assert still.rgb is None and not still.motion.any()


# ------------------------------------------------------------------------------------------ stills
@pytest.mark.parametrize("suffix", STILL_FORMATS)
def test_a_still_image_becomes_seconds_of_its_picture(suffix):
    decoded = decode_video(make_still(suffix, seed=1))
    assert decoded.still and decoded.frames.shape == (1, REGNET.flow_height, REGNET.flow_width, 3)
    assert decoded.duration_s == STILL_DURATION_S and decoded.total_frames == REGNET.frames_per_window
    short = decode_video(make_still(suffix), VideoLimits(max_duration_s=4.0))  # the default stays in the limit
    assert short.duration_s == 4.0 and short.total_frames == math.ceil(4.0 * REGNET.fps)
    assert decode_video(make_still(suffix), still_duration_s=2.4).total_frames == math.ceil(2.4 * REGNET.fps)


def test_a_still_has_no_motion_and_its_window_ranges_join():
    still = make_still(".jpg", seed=2)
    options = PreprocessOptions(window_frames=20, overlap_frames=4, z_dim=8)
    whole = preprocess(still, options, duration_s=2.4)
    assert whole.total_windows == whole.num_windows == window_count(math.ceil(2.4 * REGNET.fps), 20, 4) == 3
    assert whole.samples == round(2.4 * REGNET.sample_rate)
    zero = quantize_flow(np.zeros((1, 1, 2), dtype=np.float32))[0, 0, 0]
    assert np.all(whole.flow == zero), "no motion: the flow of a picture and itself"
    picture = rgb_inputs(decode_video(still).frames)[0]
    assert np.all(whole.rgb == picture[None, None])
    assert whole.rgb.shape[1] == whole.flow.shape[1] == 1, "the encoders see the picture once per window"
    assert whole.frame_index.shape == (3, 20) and not whole.frame_index.any()
    pieces = [preprocess(still, options, duration_s=2.4, window_start=k, window_count=1) for k in range(3)]
    for name in ("rgb", "flow", "z", "frame_index"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in pieces]), getattr(whole, name))
    joined = join_ranges([(*_sound_of(p), p.offset) for p in pieces])
    np.testing.assert_array_equal(joined[0], _sound_of(whole)[0])


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (make_still(), {"still_duration_s": 0.0}, "must be above 0 and at most 60 s, got 0"),
        (make_still(), {"still_duration_s": 61.0}, "must be above 0 and at most 60 s, got 61"),
        (make_video(duration_s=1.0), {"still_duration_s": 3.0}, "a duration applies to still images only"),
        (make_still()[:200], {}, "corrupt image data"),
        (make_still(width=400), {"limits": VideoLimits(max_width=320)}, "resolution too large: 400x240"),
    ],
    ids=["zero-duration", "over-the-limit", "duration-for-a-video", "truncated", "too-wide"],
)
def test_unusable_stills_are_clear_video_errors(data, kwargs, message):
    with pytest.raises(VideoError, match=message):
        decode_video(data, **kwargs)
