"""How the generated sound sounds, beyond its timing: the vocoder's hop-rate buzz, the log-mel distance to
the clip's own sound, and spurious onsets at the seams between windows.

- hop-rate buzz (dB): a vocoder trained without its discriminators leaves a steady tone on the harmonics
  of ``sample_rate / hop`` (86.13 Hz for RegNet). Over the quietest third of the frames (where nothing
  else covers it; n_fft 8192), each harmonic's peak level minus the median level of the spectrum within
  half a harmonic spacing around it, averaged over the harmonics below ``fmax``: near 0 dB for natural
  sound, 15-20 dB for a buzzing vocoder.
- log-mel distance (dB): mean absolute difference of RegNet's log-mel spectrograms (its [0, 1] scale
  spans 100 dB) of two waveforms, over their common length.
- seam onsets: detected onsets within ``tolerance`` of a seam between windows (where one window's sound
  hands over to the next's: s2s.windowing.seam_times) where the ground truth has no onset within
  ``tolerance`` of the detection: clicks and level jumps that windows generated independently leave.
- level step (dB): at an instant, the RMS level of the 0.2 s after it minus the 0.2 s before it, in
  absolute dB: a level jump without an attack, which an onset detector does not see. Measured at the
  seams, and at instants of the same sound away from any seam (:func:`away_from_seams`): the steps a
  sound takes anyway, events and quiet passages alike; what seams add is the difference.
- ringing lost (dB): how much quieter than the clip's own sound a waveform rings after each true onset: in
  the mel frames 2-12 after it (past the click, where struck objects ring at their modes), the level of
  the own sound's 3 strongest mel bands there, own minus the waveform's, averaged over onsets. The mean
  log-mel distance hardly sees a few bands for 0.1 s after each impact; this is the timbre of the impacts
  (0 for the own sound; a vocoder that makes clicks without the modes loses 20 dB or more).
"""

from __future__ import annotations

import numpy as np

from s2s.alignment import TOLERANCE_S, detect_onsets
from s2s.constants import REGNET, Recipe

#: the mel frames after an onset where the ringing is measured (from, to: past the click, about 0.14 s)
RINGING_FRAMES = (2, 13)
#: the own sound's strongest mel bands there (its modes) that are compared
RINGING_BANDS = 3
#: the buzz spectrum's FFT size: 2.7 Hz bins at 22.05 kHz, fine enough to separate harmonics from noise
BUZZ_N_FFT = 8192


def hop_buzz_db(waveform: np.ndarray, recipe: Recipe = REGNET, n_fft: int = BUZZ_N_FFT) -> float:
    """Mean level (dB) of the hop-rate harmonics above the local median spectrum, over the quietest third
    of the frames; 0.0 for a waveform too short or silent to tell."""
    audio = np.asarray(waveform, dtype=np.float64)
    if audio.size < n_fft or not np.any(audio):
        return 0.0
    hop = n_fft // 4
    starts = np.arange(0, audio.size - n_fft + 1, hop)
    frames = np.stack([audio[s : s + n_fft] for s in starts]) * np.hanning(n_fft)
    loudness = np.sqrt(np.mean(frames**2, axis=1))
    quiet = frames[np.argsort(loudness)[: max(1, len(frames) // 3)]]
    power = np.mean(np.abs(np.fft.rfft(quiet, axis=1)) ** 2, axis=0)
    level = 10 * np.log10(power + 1e-20)
    bin_hz = recipe.sample_rate / n_fft
    spacing = recipe.sample_rate / recipe.hop_length  # the hop rate, 86.13 Hz
    above = []
    for k in range(1, int(min(recipe.fmax, recipe.sample_rate / 2 - spacing) / spacing) + 1):
        centre, half = k * spacing / bin_hz, spacing / 2 / bin_hz
        at = round(centre)
        peak = level[at - 2 : at + 3].max()  # the harmonic's bin and its neighbours (the window's spread)
        above.append(peak - np.median(level[round(centre - half) : round(centre + half)]))
    return float(np.mean(above))


def _common_mels(a: np.ndarray, b: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, np.ndarray] | None:
    """The RegNet log-mel spectrograms of ``a`` and ``b`` over their common length; None when it is 0."""
    from s2s.audio import mel_spectrogram_librosa

    n = min(len(a), len(b))
    if n == 0:
        return None
    return tuple(mel_spectrogram_librosa(np.asarray(x[:n], dtype=np.float32), recipe) for x in (a, b))


def _nonempty_mels(a: np.ndarray, b: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_common_mels` for a distance, which an empty waveform has none of."""
    mels = _common_mels(a, b, recipe)
    if mels is None:
        raise ValueError("log-mel distance of an empty waveform")
    return mels


def log_mel_distances_db(a: np.ndarray, b: np.ndarray, recipe: Recipe = REGNET) -> tuple[float, float]:
    """Mean absolute difference (dB) of the RegNet log-mel spectrograms of ``a`` and ``b`` (common length), plain
    and level-matched, from one pair of spectrograms.

    Level-matched: with their median difference taken out first, as if ``a`` were turned up or down as a whole by
    the gain that brings it closest to ``b`` (never further than the plain distance): what is left is the difference
    in shape (which bands, which frames). On clips rendered apart from the training clips, whose loudness and room
    tone are another renderer's, the plain distance is mostly that level (benchmarks/README.md, "What the independent
    clips' log-mel distance measures").
    """
    return _distances(*_nonempty_mels(a, b, recipe), recipe)


def _distances(mel_a: np.ndarray, mel_b: np.ndarray, recipe: Recipe) -> tuple[float, float]:
    difference = (mel_a - mel_b) * -recipe.min_level_db
    return float(np.mean(np.abs(difference))), float(np.mean(np.abs(difference - np.median(difference))))


def log_mel_distance_db(a: np.ndarray, b: np.ndarray, recipe: Recipe = REGNET) -> float:
    """The plain distance of :func:`log_mel_distances_db`."""
    return log_mel_distances_db(a, b, recipe)[0]


def ringing_lost_db(
    waveform: np.ndarray, own: np.ndarray, onsets_s: np.ndarray, recipe: Recipe = REGNET
) -> float | None:  # fmt: skip
    """The level (dB) of ``own``'s strongest mel bands after each onset (seconds) minus ``waveform``'s in the
    same bands and frames, averaged over the onsets with those frames inside both; None when none has."""
    mels = _common_mels(waveform, own, recipe)
    return None if mels is None else _ringing_lost(*mels, onsets_s, recipe)


def _ringing_lost(made: np.ndarray, mel: np.ndarray, onsets_s: np.ndarray, recipe: Recipe) -> float | None:
    first, last = RINGING_FRAMES
    lost = []
    for t in np.asarray(onsets_s, dtype=np.float64):
        at = round(t * recipe.sample_rate / recipe.hop_length)
        if at < 0 or at + last > mel.shape[1]:
            continue
        theirs = mel[:, at + first : at + last]
        bands = np.argsort(theirs.mean(axis=1))[-RINGING_BANDS:]
        lost.append(float(np.mean(theirs[bands] - made[bands, at + first : at + last])))
    return float(np.mean(lost)) * -recipe.min_level_db if lost else None


def log_mel_scores(
    waveform: np.ndarray, own: np.ndarray, onsets_s: np.ndarray, recipe: Recipe = REGNET
) -> dict[str, float | None]:  # fmt: skip
    """:func:`log_mel_distances_db` and :func:`ringing_lost_db` of ``waveform`` against the clip's ``own`` sound from
    one pair of log-mel spectrograms (what ``s2s eval`` scores per clip): ``mel_distance_db``,
    ``matched_mel_distance_db`` and ``ringing_lost_db``."""
    mels = _nonempty_mels(waveform, own, recipe)
    distance, matched = _distances(*mels, recipe)
    return {"mel_distance_db": distance, "matched_mel_distance_db": matched,
            "ringing_lost_db": _ringing_lost(*mels, onsets_s, recipe)}  # fmt: skip


def seam_onsets(
    waveform: np.ndarray, truth_s: np.ndarray, seams_s: np.ndarray, recipe: Recipe = REGNET,
    tolerance_s: float = TOLERANCE_S,
) -> int:  # fmt: skip
    """Detected onsets near a seam (``seams_s``, seconds) with no ground-truth onset near them."""
    seams = np.asarray(seams_s, dtype=np.float64)
    seams = seams[seams < len(waveform) / recipe.sample_rate]
    if seams.size == 0:
        return 0
    detected, _ = detect_onsets(waveform, recipe.sample_rate)
    truth = np.asarray(truth_s, dtype=np.float64)
    spurious = 0
    for t in detected:
        near_seam = np.min(np.abs(seams - t)) <= tolerance_s
        explained = truth.size > 0 and np.min(np.abs(truth - t)) <= tolerance_s
        spurious += bool(near_seam and not explained)
    return spurious


def level_steps_db(waveform: np.ndarray, at_s: np.ndarray, recipe: Recipe = REGNET, span_s: float = 0.2) -> list[float]:
    """|RMS level after - RMS level before| (dB) over ``span_s`` at each instant of ``at_s`` (seconds) that has
    ``span_s`` of sound on both sides."""
    audio = np.asarray(waveform, dtype=np.float64)
    span = round(span_s * recipe.sample_rate)
    steps = []
    for t in np.asarray(at_s, dtype=np.float64):
        at = round(t * recipe.sample_rate)
        if at - span < 0 or at + span > audio.size:
            continue
        before, after = (
            10 * np.log10(np.mean(part**2) + 1e-12) for part in (audio[at - span : at], audio[at : at + span])
        )
        steps.append(float(abs(after - before)))
    return steps


def away_from_seams(duration_s: float, seams_s: np.ndarray, every_s: float = 0.25, clear_s: float = 1.0) -> np.ndarray:
    """Instants every ``every_s`` through a ``duration_s`` sound, at least ``clear_s`` from any seam: where
    the level steps a sound takes without seams are measured."""
    grid = np.arange(every_s, duration_s, every_s)
    seams = np.asarray(seams_s, dtype=np.float64)
    if seams.size == 0:
        return grid
    return grid[np.min(np.abs(grid[:, None] - seams[None, :]), axis=1) >= clear_s]
