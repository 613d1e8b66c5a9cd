"""The sound-quality metrics of `s2s eval` on signals whose answer is known, and the spectrogram pictures
(no server)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from s2s.constants import REGNET
from s2s.pictures import ROW_SCALE, mel_image, png, stacked
from s2s.quality import (
    away_from_seams,
    hop_buzz_db,
    level_steps_db,
    log_mel_distance_db,
    log_mel_distances_db,
    log_mel_scores,
    ringing_lost_db,
    seam_onsets,
)
from s2s.synth import make_clip

SR = REGNET.sample_rate


def _noise(seconds: float, level: float = 0.05, seed: int = 0) -> np.ndarray:
    return level * np.random.default_rng(seed).standard_normal(int(seconds * SR))


def test_buzz_finds_the_hop_rate_harmonics_and_not_natural_sound():
    t = np.arange(4 * SR) / SR
    harmonics = sum(np.sin(2 * np.pi * k * SR / REGNET.hop_length * t) for k in range(1, 40))
    assert hop_buzz_db(_noise(4)) < 3.0
    assert hop_buzz_db(_noise(4) + 0.02 * harmonics) > 10.0
    assert hop_buzz_db(make_clip(7, 6.0).audio) < 3.0, "a clip's own sound has no hop-rate tone"
    assert hop_buzz_db(np.zeros(4 * SR)) == 0.0 and hop_buzz_db(_noise(0.1)) == 0.0  # nothing to tell


def test_log_mel_distance_is_in_decibels():
    a = _noise(2)
    assert log_mel_distance_db(a, a) == 0.0
    assert log_mel_distance_db(a, 0.5 * a) == pytest.approx(20 * math.log10(2), abs=0.05)  # half the amplitude
    assert log_mel_distance_db(a, np.concatenate([0.5 * a, a])) == pytest.approx(6.02, abs=0.05)  # common length
    with pytest.raises(ValueError, match="empty"):
        log_mel_distance_db(a, a[:0])
    # level-matched: a sound turned down as a whole is the same shape; another sound at the same level is not
    assert log_mel_distances_db(a, 0.5 * a)[1] == pytest.approx(0.0, abs=0.05)
    other = _noise(2, seed=1)
    plain, matched = log_mel_distances_db(a, other)
    assert plain == log_mel_distance_db(a, other) and matched == pytest.approx(plain, abs=0.5) and matched > 2.0


def test_seam_onsets_count_clicks_at_window_boundaries_that_no_event_explains():
    quiet = _noise(5, level=0.002)

    def click_at(t: float) -> np.ndarray:
        out = quiet.copy()
        i = int(t * SR)
        out[i : i + 300] += 0.8 * np.random.default_rng(1).standard_normal(300)
        return out

    assert seam_onsets(click_at(2.0), np.array([]), np.array([2.0, 4.0])) == 1
    assert seam_onsets(click_at(2.0), np.array([2.02]), np.array([2.0])) == 0, "a true onset there explains it"
    assert seam_onsets(click_at(3.0), np.array([]), np.array([2.0, 4.0])) == 0, "not at a seam"
    assert seam_onsets(click_at(2.0), np.array([]), np.array([])) == 0, "one window: no seam"
    assert seam_onsets(click_at(2.0), np.array([]), np.array([7.0])) == 0, "a seam past the end is none"


def test_spectrogram_pictures_put_low_bands_at_the_bottom_and_stack_with_labels():
    mel = np.zeros((REGNET.n_mels, 50), dtype=np.float32)
    mel[0] = 1.0  # the lowest band loud, the rest silent
    image = mel_image(mel)
    assert image.shape == (ROW_SCALE * REGNET.n_mels, 50, 3) and image.dtype == np.uint8
    assert image[-ROW_SCALE:].mean() > 200 and image[:-ROW_SCALE].mean() < 10  # bottom rows bright, the rest dark
    both = stacked({"generated": mel, "own sound": np.ones((REGNET.n_mels, 40), dtype=np.float32)})
    assert both.shape == (2 * ROW_SCALE * REGNET.n_mels + 2, 40, 3)  # cut to the shorter, a line between
    assert not np.array_equal(both[:20], image[:20, :40]), "the label is written on the picture"
    decoded = cv2.imdecode(np.frombuffer(png(both), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded, both)
    with pytest.raises(ValueError, match="expected a mel"):
        mel_image(np.zeros((80, 0)))


def test_level_step_is_the_jump_in_level_across_an_instant_and_the_baseline_keeps_clear_of_seams():
    steady = _noise(3.0, level=0.05, seed=3)
    louder = steady.copy()
    louder[int(2.0 * SR) :] *= 2.0  # twice as loud from the second seam on: +6.02 dB there
    seams = np.array([1.0, 2.0])
    assert all(step < 0.5 for step in level_steps_db(steady, seams))
    first, second = level_steps_db(louder, seams)
    assert first < 0.5 and second == pytest.approx(20 * math.log10(2.0), abs=0.5)
    assert level_steps_db(_noise(1.1), np.array([1.0])) == []  # no 0.2 s of sound after it
    away = away_from_seams(10.0, np.array([3.0, 6.5]), every_s=0.25, clear_s=1.0)
    assert away.size > 0 and np.min(np.abs(away[:, None] - np.array([3.0, 6.5]))) >= 1.0
    assert 2.0 in away and 4.0 in away and 2.5 not in away and 9.75 in away
    assert away_from_seams(2.0, np.array([])).tolist() == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def test_ringing_lost_is_how_much_quieter_the_modes_ring_after_each_onset():
    onsets = np.array([0.5, 1.5, 2.5])
    t = np.arange(int(0.4 * SR)) / SR
    modes = sum(np.sin(2 * np.pi * f * t) for f in (1200.0, 2300.0, 3700.0)) * np.exp(-t / 0.15) / 3

    def struck(ringing: float) -> np.ndarray:
        out = _noise(3.2, level=0.001)
        for onset in onsets:
            i = int(onset * SR)
            out[i : i + 200] += 0.5 * np.random.default_rng(i).standard_normal(200)  # the click
            out[i : i + t.size] += ringing * 0.3 * modes
        return out

    own = struck(1.0)
    assert ringing_lost_db(own, own, onsets) == 0.0
    assert ringing_lost_db(struck(0.5), own, onsets) == pytest.approx(20 * math.log10(2), abs=0.5)  # half as loud
    assert ringing_lost_db(struck(0.0), own, onsets) > 20.0, "clicks without the modes"
    assert ringing_lost_db(struck(2.0), own, onsets) == pytest.approx(-6.02, abs=0.5), "louder rings: negative"
    assert ringing_lost_db(own, own, np.array([3.19])) is None, "no frames after the last onset"
    # s2s eval's per-clip scores from one pair of log-mels: the same numbers as the two functions apart
    made = struck(0.5)
    together = log_mel_scores(made, own, onsets)
    assert together["ringing_lost_db"] == pytest.approx(ringing_lost_db(made, own, onsets), abs=1e-9)
    plain, matched = log_mel_distances_db(made, own)
    assert (together["mel_distance_db"], together["matched_mel_distance_db"]) == pytest.approx((plain, matched))
    with pytest.raises(ValueError, match="empty"):
        log_mel_scores(np.zeros(0, np.float32), own, onsets)
