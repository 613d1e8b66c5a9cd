"""How well generated sound follows the picture: onset accuracy (and by chance), onset AP, energy-envelope correlation.

The onset metrics of CondFoleyGen / MMAudio: onsets of the generated waveform are found with librosa
(``onset_detect`` with ``delta=0.3`` on the spectral-flux envelope); detections closer than 0.05 s to a
stronger one are suppressed; a detection within +-0.1 s of a ground-truth onset that no stronger
detection took is a hit.

- accuracy = ground-truth onsets hit / ground-truth onsets;
- chance accuracy: the accuracy the same detections score with their times shifted around the clip (circularly,
  by whole sixteenths of its duration), which keeps how many there are and their rhythm and takes away what they
  have to do with the picture. Accuracy counts the true onsets hit, not the detections that hit nothing, so a sound
  with an onset every 0.2 s scores 1 on any clip; its chance accuracy is 1 too. The accuracy above chance is what
  the picture earned;
- AP: detections ranked by onset strength, average precision over that ranking (sum over hits of the
  precision at the hit's rank, divided by the number of ground-truth onsets);
- envelope correlation: Pearson correlation of the log-RMS energy envelopes (frames of 1024 samples,
  hop 256) of the generated and the reference waveform.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TOLERANCE_S = 0.1
MIN_GAP_S = 0.05
DELTA = 0.3
#: the chance accuracy is the mean over this many shifts less one (k / CHANCE_SHIFTS of the clip, k = 1 ...)
CHANCE_SHIFTS = 16


@dataclass(frozen=True)
class OnsetScores:
    accuracy: float
    ap: float
    hits: int
    truth: int
    detected: int
    #: :func:`chance_accuracy` of the same detections (None where the clip's duration was not given)
    chance_accuracy: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def detect_onsets(audio: np.ndarray, sample_rate: int, delta: float = DELTA) -> tuple[np.ndarray, np.ndarray]:
    """(times in s, strengths) of the onsets of ``audio``, strongest first within 0.05 s of each other."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0 or not np.any(audio):
        return np.zeros(0), np.zeros(0)
    envelope = librosa.onset.onset_strength(y=audio, sr=sample_rate)
    frames = librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate, delta=delta, units="frames")
    times = librosa.frames_to_time(frames, sr=sample_rate)
    strengths = envelope[frames] if frames.size else np.zeros(0)
    return suppress_close(times, strengths)


def suppress_close(times: np.ndarray, strengths: np.ndarray, gap_s: float = MIN_GAP_S) -> tuple[np.ndarray, np.ndarray]:
    """Keep the strongest of detections closer than ``gap_s`` to each other; returns them in time order."""
    keep: list[int] = []
    for i in np.argsort(-np.asarray(strengths), kind="stable"):
        if all(abs(times[i] - times[j]) >= gap_s for j in keep):
            keep.append(int(i))
    keep.sort(key=lambda i: times[i])
    return np.asarray(times)[keep], np.asarray(strengths)[keep]


def score_onsets(
    truth: np.ndarray, times: np.ndarray, strengths: np.ndarray, tolerance_s: float = TOLERANCE_S,
    duration_s: float | None = None,
) -> OnsetScores:  # fmt: skip
    """Accuracy and AP of detections (``times``, ``strengths``) against ground-truth onset times; with the clip's
    ``duration_s``, also their :func:`chance_accuracy`."""
    chance = None if duration_s is None else chance_accuracy(truth, times, duration_s, tolerance_s)
    truth = np.sort(np.asarray(truth, dtype=np.float64))
    order = np.argsort(-np.asarray(strengths), kind="stable")
    taken = np.zeros(truth.size, dtype=bool)
    hits_at_rank = []
    for i in order:  # strongest detection first claims the nearest free ground-truth onset
        gaps = np.abs(truth - times[i])
        gaps[taken] = np.inf
        j = int(np.argmin(gaps)) if truth.size else -1
        hit = truth.size > 0 and gaps[j] <= tolerance_s + 1e-9
        if hit:
            taken[j] = True
        hits_at_rank.append(hit)
    hits = np.asarray(hits_at_rank, dtype=bool)
    n_hits = int(hits.sum())
    if truth.size == 0:
        return OnsetScores(accuracy=1.0 if times.size == 0 else 0.0, ap=1.0 if times.size == 0 else 0.0,
                           hits=0, truth=0, detected=int(times.size), chance_accuracy=chance)  # fmt: skip
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1) if hits.size else np.zeros(0)
    ap = float((precision * hits).sum() / truth.size)
    return OnsetScores(accuracy=n_hits / truth.size, ap=ap, hits=n_hits, truth=int(truth.size),
                       detected=int(times.size), chance_accuracy=chance)  # fmt: skip


def chance_accuracy(
    truth: np.ndarray, times: np.ndarray, duration_s: float, tolerance_s: float = TOLERANCE_S,
    shifts: int = CHANCE_SHIFTS,
) -> float:  # fmt: skip
    """The accuracy detections at ``times`` would score if they had nothing to do with the picture: the mean over
    their times shifted by k / ``shifts`` of the clip's ``duration_s`` (k = 1 ... shifts - 1), wrapped around its
    end, each shift scored against ``truth`` as :func:`score_onsets` does. The shifts keep the detections' number and
    rhythm: a sound that puts onsets everywhere hits most of the truth at any shift."""
    times = np.asarray(times, dtype=np.float64)
    if duration_s <= 0 or shifts < 2:
        raise ValueError(f"chance accuracy needs a positive duration and at least 2 shifts, not {duration_s}, {shifts}")
    equal = np.ones(times.size)
    return float(np.mean([
        score_onsets(truth, np.mod(times + duration_s * k / shifts, duration_s), equal, tolerance_s).accuracy
        for k in range(1, shifts)
    ]))  # fmt: skip


def onset_scores(audio: np.ndarray, sample_rate: int, truth: np.ndarray) -> OnsetScores:
    """The scores of ``audio``'s onsets (:func:`detect_onsets`) against ``truth``, the chance accuracy included."""
    return score_onsets(truth, *detect_onsets(audio, sample_rate), duration_s=np.asarray(audio).size / sample_rate)


def envelope_correlation(generated: np.ndarray, reference: np.ndarray, frame: int = 1024, hop: int = 256) -> float:
    """Pearson correlation of the two waveforms' log-RMS envelopes (over their common length)."""
    import librosa

    n = min(generated.size, reference.size)
    if n < frame:
        return 0.0
    a = librosa.feature.rms(y=np.asarray(generated[:n], np.float32), frame_length=frame, hop_length=hop)[0]
    b = librosa.feature.rms(y=np.asarray(reference[:n], np.float32), frame_length=frame, hop_length=hop)[0]
    a, b = np.log(a + 1e-4), np.log(b + 1e-4)
    if np.ptp(a) < 1e-6 or np.ptp(b) < 1e-6:  # a flat envelope (silence) correlates with nothing
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
