"""What postprocess's cross-fade does at a seam, per vocoder: the two windows' sounds over the middle 0.2 s of
their overlap (each resampled to the samples it covers, s2s.windowing.to_span, as postprocess does), their
correlation there, and the joined sound's level there against the mean power of the two (0 dB: the fade keeps the
level; with the equal-power fade postprocess had until 2026-12-07, +3 dB: the two are the same sound and the fade adds
them in amplitude; with the linear fade it has since, 0 dB for the same sound, -3 dB for two unrelated), and the level
step
(s2s.quality.level_steps_db: the 0.2 s after the seam against the 0.2 s before) of the joined sound and of each
window's sound alone. In process (benchmarks.reference, PyTorch), on the eval's long held-out clips.

    python seam_phase.py GENERATOR NAME=VOCODER [NAME=VOCODER ...] [--seeds 1000016 1000017]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from benchmarks.reference import ReferencePipeline
from export.specs import ExportOptions
from s2s.constants import REGNET
from s2s.quality import level_steps_db
from s2s.synth import encode_clip, make_clip
from s2s.windowing import postprocess, seam_times, to_span


def power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-12))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("generator", type=Path)
    p.add_argument("vocoders", nargs="+", help="NAME=CHECKPOINT")
    p.add_argument("--seeds", type=int, nargs="+", default=[1000016, 1000017])
    p.add_argument("--seconds", type=float, default=25.0)
    a = p.parse_args()
    clips = [make_clip(s, a.seconds) for s in a.seeds]
    videos = [encode_clip(c) for c in clips]
    half = round(0.1 * REGNET.sample_rate)
    head = ("| vocoder | seam | correlation of the two windows | joined level minus their mean power (dB) "
            "| level step: joined / window before alone / window after alone (dB) |\n"
            "|---|---|---:|---:|---:|")  # fmt: skip
    print(head)  # noqa: T201
    for name, path in (v.split("=", 1) for v in a.vocoders):
        options = ExportOptions(generator_checkpoint=a.generator, generator_config="small",
                                vocoder_checkpoint=Path(path))  # fmt: skip
        reference = ReferencePipeline.pytorch(options)
        for clip, video in zip(clips, videos, strict=True):
            windows = reference.preprocess(video)
            waves, mels = reference.run_networks(windows)
            joined, _ = postprocess(waves, mels, windows.layout, windows.samples, windows.mel_frames)
            seams = seam_times(clip.audio.size / REGNET.sample_rate, reference.options)
            for k, seam in enumerate(seams):
                placed, alone = [], []
                for w in (k, k + 1):
                    start, span = (int(v) for v in windows.layout[w, 0, :2])
                    part = to_span(waves[w], span)
                    placed.append((start, part))
                    alone.append(level_steps_db(part, np.array([seam - start / REGNET.sample_rate]))[0])
                at = round(seam * REGNET.sample_rate)
                x, y = (part[at - half - start : at + half - start] for start, part in placed)
                mean = 10 * np.log10((10 ** (power_db(x) / 10) + 10 ** (power_db(y) / 10)) / 2)
                gain = power_db(joined[at - half : at + half]) - mean
                step = level_steps_db(joined, np.array([seam]))[0]
                row = (f"| {name} | {clip.seed} at {seam:.2f} s | {np.corrcoef(x, y)[0, 1]:+.2f} | {gain:+.1f} "
                       f"| {step:.1f} / {alone[0]:.1f} / {alone[1]:.1f} |")  # fmt: skip
                print(row, flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
