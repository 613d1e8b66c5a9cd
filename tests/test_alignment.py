"""The alignment metrics on constructed signals with known answers, and the synthetic clips' ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from s2s.alignment import detect_onsets, envelope_correlation, onset_scores, score_onsets, suppress_close
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
