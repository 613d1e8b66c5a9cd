"""How well generated sound follows the picture: onset accuracy, onset AP and energy-envelope correlation.

The onset metrics of CondFoleyGen / MMAudio: onsets of the generated waveform are found with librosa
(``onset_detect`` with ``delta=0.3`` on the spectral-flux envelope); detections closer than 0.05 s to a
stronger one are suppressed; a detection within +-0.1 s of a ground-truth onset that no stronger
detection took is a hit.

- accuracy = ground-truth onsets hit / ground-truth onsets;
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


@dataclass(frozen=True)
class OnsetScores:
    accuracy: float
    ap: float
    hits: int
    truth: int
    detected: int

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
    truth: np.ndarray, times: np.ndarray, strengths: np.ndarray, tolerance_s: float = TOLERANCE_S
) -> OnsetScores:
    """Accuracy and AP of detections (``times``, ``strengths``) against ground-truth onset times."""
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
                           hits=0, truth=0, detected=int(times.size))  # fmt: skip
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1) if hits.size else np.zeros(0)
    ap = float((precision * hits).sum() / truth.size)
    return OnsetScores(
        accuracy=n_hits / truth.size, ap=ap, hits=n_hits, truth=int(truth.size), detected=int(times.size)
    )


def onset_scores(audio: np.ndarray, sample_rate: int, truth: np.ndarray) -> OnsetScores:
    return score_onsets(truth, *detect_onsets(audio, sample_rate))


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
