"""The alignment metrics on constructed signals with known answers, and the synthetic clips' ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from s2s.alignment import (
    chance_accuracy,
    detect_onsets,
    envelope_correlation,
    onset_scores,
    score_onsets,
    suppress_close,
)
from s2s.synth import EVENT_KINDS, encode_clip, make_clip
from s2s.video import decode_video

SR = 22050


def clicks(times: list[float], duration_s: float = 4.0, seed: int = 0) -> np.ndarray:
    """Damped 900 Hz knocks at ``times`` over faint noise."""
    rng = np.random.default_rng(seed)
    audio = 0.002 * rng.standard_normal(int(duration_s * SR))
    t = np.arange(int(0.2 * SR)) / SR
    knock = np.exp(-t / 0.03) * np.sin(2 * np.pi * 900 * t)
    for at in times:
        i = int(at * SR)
        audio[i : i + knock.size] += 0.5 * knock[: audio.size - i]
    return audio.astype(np.float32)


def test_accuracy_and_ap_count_hits_in_strength_order():
    truth = np.array([1.0, 2.0, 3.0])
    # strongest: a hit, then a miss (0.5 s off), then a hit
    scores = score_onsets(truth, np.array([1.05, 2.5, 3.0]), np.array([0.9, 0.8, 0.7]))
    assert (scores.hits, scores.truth, scores.detected) == (2, 3, 3)
    assert scores.accuracy == pytest.approx(2 / 3)
    assert scores.ap == pytest.approx((1 / 1 + 2 / 3) / 3)
    # the same detections with the miss ranked last score a higher AP, the same accuracy
    better = score_onsets(truth, np.array([1.05, 2.5, 3.0]), np.array([0.9, 0.1, 0.7]))
    assert better.accuracy == scores.accuracy and better.ap == pytest.approx((1 + 1) / 3)


def test_a_detection_claims_one_onset_within_the_tolerance():
    assert score_onsets(np.array([1.0, 1.08]), np.array([1.04]), np.array([1.0])).hits == 1
    assert score_onsets(np.array([1.0]), np.array([1.1]), np.array([1.0])).hits == 1  # +-0.1 s inclusive
    assert score_onsets(np.array([1.0]), np.array([1.11]), np.array([1.0])).hits == 0
    empty = score_onsets(np.array([1.0, 2.0]), np.zeros(0), np.zeros(0))
    assert empty.accuracy == 0 and empty.ap == 0


def test_chance_accuracy_is_what_the_same_detections_score_anywhere_in_the_clip():
    truth = np.array([1.0, 2.3, 3.7, 5.2, 6.9])
    # one detection at each onset, shifted by k sixteenths of 8 s (0.5 s): most shifts hit nothing, some land one on
    # another onset (k = 3: 2.3 -> 3.8, 0.1 s from 3.7, and 3.7 -> 5.2): 10 hits of 15 x 5 over the 15 shifts
    exact = score_onsets(truth, truth, np.ones(5), duration_s=8.0)
    assert exact.accuracy == 1.0 and exact.chance_accuracy == pytest.approx(10 / 75)
    # an onset every 0.2 s hits every onset wherever it is shifted: accuracy 1, but no better than chance
    everywhere = np.arange(0.0, 8.0, 0.2)
    dense = score_onsets(truth, everywhere, np.ones(everywhere.size), duration_s=8.0)
    assert dense.accuracy == 1.0 and dense.chance_accuracy == 1.0 and dense.ap < 0.2
    # no detections, nothing by chance; shifts wrap around the clip's end (7.9 + 0.5 -> 0.4)
    assert chance_accuracy(truth, np.zeros(0), 8.0) == 0.0
    assert chance_accuracy(np.array([0.4]), np.array([7.9]), 8.0, shifts=16) == pytest.approx(1 / 15)
    assert score_onsets(truth, truth, np.ones(5)).chance_accuracy is None  # no duration given
    with pytest.raises(ValueError, match="positive duration"):
        chance_accuracy(truth, truth, 0.0)


def test_close_detections_keep_the_strongest():
    times, strengths = suppress_close(np.array([1.0, 1.03, 1.2]), np.array([0.5, 0.9, 0.3]))
    np.testing.assert_allclose(times, [1.03, 1.2])
    np.testing.assert_allclose(strengths, [0.9, 0.3])


def test_onsets_of_constructed_knocks_are_found_and_misplaced_ones_are_not():
    truth = [0.5, 1.3, 1.9, 2.8, 3.4]
    audio = clicks(truth)
    times, _ = detect_onsets(audio, SR)
    assert len(times) == len(truth) and np.abs(times - truth).max() < 0.05
    scores = onset_scores(audio, SR, np.array(truth))
    assert scores.accuracy == 1.0 and scores.ap == pytest.approx(1.0)
    # the clip's duration comes from the audio: the same five knocks anywhere else hit little
    assert scores.chance_accuracy == pytest.approx(chance_accuracy(np.array(truth), times, 4.0))
    assert scores.chance_accuracy < 0.5
    late = onset_scores(clicks([t + 0.3 for t in truth[:-1]]), SR, np.array(truth))
    assert late.accuracy == 0.0 and late.ap == 0.0
    silent = onset_scores(np.zeros(SR * 2, np.float32), SR, np.array(truth))
    assert silent.detected == 0 and silent.accuracy == 0.0


def test_envelope_correlation():
    a = clicks([0.5, 1.5, 2.5])
    assert envelope_correlation(a, a) == pytest.approx(1.0)
    assert envelope_correlation(a, clicks([0.5, 1.5, 2.5], seed=1)) > 0.9  # other noise, same knocks
    assert envelope_correlation(a, clicks([1.0, 2.0, 3.0])) < 0.3  # knocks elsewhere
    assert envelope_correlation(a, np.zeros_like(a)) == 0.0


def test_clips_are_reproducible_and_their_onsets_are_where_the_sound_starts():
    clip = make_clip(11, 4.0)
    again = make_clip(11, 4.0)
    np.testing.assert_array_equal(clip.frames, again.frames)
    np.testing.assert_array_equal(clip.audio, again.audio)
    assert not np.array_equal(make_clip(12, 4.0).audio, clip.audio)
    assert clip.frames.shape == (86, 256, 340, 3) and clip.audio.size == 4 * SR
    for seed, kinds in ((3, ("bounce",)), (4, ("strike",)), (5, ("slide",))):
        c = make_clip(seed, 4.0, kinds=kinds)
        assert set(c.kinds) <= set(kinds) <= set(EVENT_KINDS) and len(c.onsets) >= 2
        assert np.all(np.diff(c.onsets) >= 0.1)
        # the clip's own sound scores (nearly) perfectly: the ground truth is where the sound starts
        assert onset_scores(c.audio, SR, c.onsets).accuracy >= 0.9, kinds
        # and something moves on screen at each onset
        for t in c.onsets:
            i = min(round(t * c.fps), len(c.frames) - 2)
            j = max(0, i - 2)
            assert np.abs(c.frames[i + 1].astype(int) - c.frames[j].astype(int)).mean() > 0.05, (kinds, t)


def test_impacts_during_friction_noise_stay_onsets_of_the_clips_own_sound():
    # a box sliding while a ball bounces or a stick strikes: the friction noise must not mask the impacts
    # (or the eval would score the data, not the model)
    hits = truth = 0
    for kinds in (("slide", "bounce"), ("slide", "strike")):
        mixed = [c for c in (make_clip(seed, 4.0, kinds=kinds) for seed in range(12)) if len(c.kinds) == 2][:6]
        assert len(mixed) == 6
        for c in mixed:
            s = onset_scores(c.audio, SR, c.onsets)
            hits, truth = hits + s.hits, truth + s.truth
    assert hits / truth >= 0.9, (hits, truth)


def test_encoded_clip_decodes_at_the_pipeline_rate():
    clip = make_clip(21, 2.0)
    decoded = decode_video(encode_clip(clip))
    assert decoded.num_frames == len(clip.frames)
    assert abs(decoded.duration_s - 2.0) < 0.06
    assert np.abs(decoded.frames.astype(int) - clip.frames.astype(int)).mean() < 4  # H.264 at crf 18


def test_the_same_frames_encode_to_the_same_bytes(tmp_path):
    # 400 px wide (25 macroblocks): x264's SIMD macroblock tree read memory it never wrote there, so the same
    # frames came out as other bytes from one encode to the next (and the eval's served features moved)
    from s2s.client.mux import mux_audio
    from s2s.independent import INDEPENDENT_SEEDS, independent_clip

    clip = independent_clip(INDEPENDENT_SEEDS.start + 7, 2.0)
    assert clip.frames.shape[2] == 400
    encodes, muxed = set(), set()
    for n in range(4):
        clutter = [np.random.default_rng(n).bytes(1 << 20) for _ in range(4)]  # other heap contents each time
        encodes.add(encode_clip(clip))
        out = tmp_path / f"{n}.mp4"
        mux_audio(encode_clip(clip, container="gif"), clip.audio, out)  # mp4 cannot hold a GIF: re-encoded
        muxed.add(out.read_bytes())
        del clutter
    assert len(encodes) == 1 and len(muxed) == 1


def test_the_wide_variety_draws_more_kinds_frame_rates_and_looks_and_keeps_its_ground_truth():
    from s2s.synth import VARIETIES, WIDE_FPS, WIDE_KINDS, _make_pair

    assert VARIETIES == ("plain", "wide")
    clips = [make_clip(seed, 3.0, variety="wide") for seed in range(8)]
    np.testing.assert_array_equal(clips[0].frames, make_clip(0, 3.0, variety="wide").frames)  # reproducible
    assert {c.fps for c in clips} <= set(WIDE_FPS) and len({c.fps for c in clips}) >= 3
    assert all(len(c.frames) == round(3.0 * c.fps) for c in clips)
    # the wide clip of a seed is another clip than the plain one, which stays as it was
    assert not np.array_equal(make_clip(0, 3.0).audio, clips[0].audio)
    collide = [make_clip(seed, 4.0, kinds=WIDE_KINDS, variety="wide") for seed in range(3)]
    hits = truth = 0
    for c in collide + clips:
        s = onset_scores(c.audio, SR, c.onsets)
        hits, truth = hits + s.hits, truth + s.truth
    assert hits / truth >= 0.9, (hits, truth)
    assert all(set(c.kinds) == {"collide"} for c in collide)
    # each collision is where the two bodies touch, and they approach before it and part after it
    pair, events = _make_pair(np.random.default_rng(4), 8.0, 340, 220.0)
    assert len(events) >= 3
    for t, _ in events:
        a, b = pair.positions(t)
        assert b - a == pytest.approx(sum(pair.radii), abs=1e-6)
        before, after = pair.positions(t - 0.05), pair.positions(t + 0.05)
        assert before[1] - before[0] > b - a and after[1] - after[0] > b - a
        assert all(0 <= x <= 340 for x in (*before, *after))
    with pytest.raises(ValueError, match="unknown variety"):
        make_clip(0, 1.0, variety="fancy")


def test_the_independent_set_has_its_own_kinds_sizes_and_rates_and_exact_onsets():
    from s2s.independent import (
        FRAME_RATES,
        INDEPENDENT_KINDS,
        INDEPENDENT_SEEDS,
        SIZES,
        _Hammer,
        _Puck,
        _Toppler,
        independent_clip,
    )  # fmt: skip
    from s2s.synth import HELD_OUT_SEEDS, WIDE_KINDS

    assert not set(INDEPENDENT_KINDS) & set(EVENT_KINDS + WIDE_KINDS), "its event kinds are never trained on"
    assert INDEPENDENT_SEEDS.start >= HELD_OUT_SEEDS.stop
    clips = [independent_clip(seed, 4.0) for seed in range(INDEPENDENT_SEEDS.start, INDEPENDENT_SEEDS.start + 8)]
    np.testing.assert_array_equal(clips[0].frames, independent_clip(INDEPENDENT_SEEDS.start, 4.0).frames)
    assert {c.frames.shape[2:0:-1] for c in clips} <= set(SIZES) and {c.fps for c in clips} <= set(FRAME_RATES)
    assert len({c.fps for c in clips}) >= 2 and all(set(c.kinds) <= set(INDEPENDENT_KINDS) for c in clips)
    hits = truth = 0
    for c in clips:
        s = onset_scores(c.audio, SR, c.onsets)
        hits, truth = hits + s.hits, truth + s.truth
        assert np.all(np.diff(c.onsets) >= 0.1) and len(c.onsets) >= 1
    assert hits / truth >= 0.9, (hits, truth)
    # the physics puts each event where the motion stops: a block lands flat, a hammer on its plate, a puck
    # at a wall (and turns back)
    block = _Toppler(x=100, direction=1, half_w=6, half_h=30, start=1.0, fall_s=0.5, colour=(1, 1, 1))
    assert block.angle(0.9) == 0 and block.angle(1.5) == pytest.approx(np.pi / 2) and block.angle(1.4) < 1.2
    hammer = _Hammer(x=50, half_w=10, plate_y=200, lift=60, drops=[1.0, 2.0], colour=(1, 1, 1))
    assert hammer.height(1.0) == pytest.approx(0) and hammer.height(0.9) > 20 and hammer.height(1.9) > 50
    puck = _Puck(r=10, left=20, right=300, x0=150, speed=-200, colour=(1, 1, 1))
    contacts = puck.contacts(6.0)
    assert len(contacts) >= 3
    for t in contacts:
        x = puck.x(t)
        assert min(abs(x - 30), abs(x - 290)) < 1e-6
        assert puck.x(t - 0.02) == pytest.approx(puck.x(t + 0.02), abs=1e-6)  # it came and goes back the same way
