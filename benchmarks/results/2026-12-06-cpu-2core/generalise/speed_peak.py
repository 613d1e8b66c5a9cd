"""Does the generator sound where the picture moves fastest rather than where motion changes suddenly?

Silent clips of a pendulum swinging freely (no contact, no sound but room tone), drawn with s2s.independent's
canvas: the bob is fastest at the bottom of each swing and its motion changes smoothly there. A generator that
learnt "a sound where the speed peaks" (every impact of the training kinds comes at the body's fastest: a ball
falls onto the floor, a stick swings down onto a block) sounds at the bottoms; one that learnt "a sound where
the motion changes suddenly" stays quiet. Scored like onsets with the bottom passages as the "truth", against
the same detections scored at the swing's ends (the slowest points) as a control.

    python speed_peak.py features RUN_WITH_ENCODERS CACHE [--clips 8]
    python speed_peak.py score CACHE GENERATOR VOCODER [--label L] [--delta] [--motion replace|append]
        [--motion-form signed|turning|change|scaled]
    python speed_peak.py data RUN_WITH_ENCODERS OUT [--first 1000] [--clips 40]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from probe import Renderer, encoder_sessions, rendered  # this folder's probe.py

from s2s.alignment import score_onsets
from s2s.constants import REGNET
from s2s.independent import Canvas, _backdrop, pixel_centres
from s2s.synth import Clip, encode_clip
from s2s.training.train import encoder_features
from s2s.video import decode_video


def pendulum_clip(seed: int, duration_s: float = 8.0) -> tuple[Clip, np.ndarray, np.ndarray]:
    """(clip, bottom passage times, end-of-swing times) of a silent swinging pendulum."""
    rng = np.random.default_rng([seed, 88211])
    width, height, fps = 340, 256, REGNET.fps
    floor_y = height * 0.9
    backdrop = _backdrop(rng, width, height, floor_y)
    pivot = (rng.uniform(0.35, 0.65) * width, rng.uniform(10, 30))
    length = rng.uniform(0.45, 0.7) * height
    amplitude = rng.uniform(0.5, 1.0)  # radians
    period = 2 * math.pi * math.sqrt(length / rng.uniform(900, 2500))  # px/s^2: a period of about 1-2 s
    phase = rng.uniform(0, 2 * math.pi)
    r = rng.uniform(10, 18)
    colour = tuple(float(c) for c in rng.uniform(60, 255, 3))
    centres = pixel_centres(width, height)
    frames = np.empty((round(duration_s * fps), height, width, 3), np.uint8)
    for i in range(frames.shape[0]):
        a = amplitude * math.sin(2 * math.pi * i / fps / period + phase)
        bx, by = pivot[0] + length * math.sin(a), pivot[1] + length * math.cos(a)
        canvas = Canvas(backdrop.copy(), centres)
        steps = 12
        for k in range(steps):  # the rod
            u = k / steps
            canvas.disc(pivot[0] + (bx - pivot[0]) * u, pivot[1] + (by - pivot[1]) * u, 2.0, (40, 40, 40))
        canvas.disc(bx, by, r, colour)
        frames[i] = np.clip(canvas.image[..., ::-1] + 0.5, 0, 255).astype(np.uint8)
    # angle = A sin(2 pi t / T + phase): bottom where the sine is 0, the ends where it is +-1
    k = np.arange(-2, 2 * duration_s / period + 2)
    bottoms = (k * math.pi - phase) / (2 * math.pi) * period
    ends = ((k + 0.5) * math.pi - phase) / (2 * math.pi) * period
    keep = lambda t: np.sort(t[(t > 0.3) & (t < duration_s - 0.3)])  # noqa: E731
    sr = REGNET.sample_rate
    audio = (rng.standard_normal(round(duration_s * sr)) * 10 ** (-50 / 20)).astype(np.float32)
    clip = Clip(frames=frames, audio=audio, onsets=keep(bottoms), fps=fps, sample_rate=sr, seed=seed, kinds=["swing"])
    return clip, keep(bottoms), keep(ends)


def features(run: Path, cache: Path, clips: int) -> None:
    sessions = encoder_sessions(run)
    cache.mkdir(parents=True, exist_ok=True)
    for seed in range(clips):
        path = cache / f"swing_{seed}.npz"
        if path.exists():
            continue
        clip, bottoms, ends = pendulum_clip(seed)
        feats = encoder_features(sessions, decode_video(encode_clip(clip)).frames)
        np.savez(path, rgb=feats["tsn_rgb"], flow=feats["tsn_flow"], bottoms=bottoms, ends=ends)
        sys.stdout.write(f"swing {seed}\n")
        sys.stdout.flush()


def score(
    cache: Path,
    generator_path: Path,
    vocoder_path: Path,
    label: str,
    delta: bool = False,
    motion: str | None = None,
    form: str = "signed",
) -> dict:
    render = Renderer(generator_path, vocoder_path, delta=delta)
    at_bottoms, at_ends, detected, level = [], [], 0, []
    for _, z, wave, times, strengths in rendered(sorted(cache.glob("swing_*.npz")), render, motion, form=form):
        at_bottoms.append(score_onsets(z["bottoms"], times, strengths).accuracy)
        at_ends.append(score_onsets(z["ends"], times, strengths).accuracy)
        detected += times.size
        level.append(float(20 * np.log10(np.sqrt(np.mean(wave**2)) + 1e-9)))
    out = {"label": label, "clips": len(at_bottoms), "hit_bottoms": round(float(np.mean(at_bottoms)), 3),
           "hit_ends": round(float(np.mean(at_ends)), 3), "detections": detected,
           "level_dbfs": round(float(np.median(level)), 1)}  # fmt: skip
    sys.stdout.write(json.dumps(out) + "\n")
    return out


def training_data(run: Path, out: Path, first: int, clips: int, duration_s: float = 6.0) -> None:
    """Silent pendulum clips as training data (features, mel, waveform: the data stage's record), the room tone of
    s2s.synth's clips as their sound: a body moving fastest with no sound."""
    from s2s.audio import MelSpectrogram
    from s2s.synth import _room_tone

    sessions = encoder_sessions(run)
    mel = MelSpectrogram()
    out.mkdir(parents=True, exist_ok=True)
    for seed in range(first, first + clips):
        path = out / f"clip_swing_{seed:07d}.npz"
        if path.exists():
            continue
        clip, _, _ = pendulum_clip(seed, duration_s)
        audio = _room_tone(np.random.default_rng([seed, 5]), clip.audio.size).astype(np.float32)
        pictures = clip.frames
        feats = encoder_features(sessions, pictures)
        target = mel(torch.from_numpy(audio)[None])[0].numpy()[:, : REGNET.mel_frames_per_frame * len(pictures)]
        np.savez(path, rgb=feats["tsn_rgb"].astype(np.float16), flow=feats["tsn_flow"].astype(np.float16),
                 mel=target.astype(np.float16), audio=audio, onsets=np.zeros(0))  # fmt: skip
        sys.stdout.write(f"data swing {seed}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("features", "score", "data"))
    p.add_argument("args", nargs="+")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--label", default="")
    p.add_argument("--delta", action="store_true")
    p.add_argument("--motion", choices=("replace", "append"), help="probe.py's cached(): motion.py's statistics")
    p.add_argument("--motion-form", default="signed", help="forms.py's FORMS: signed, turning, change, scaled")
    p.add_argument("--first", type=int, default=1000)
    a = p.parse_args()
    if a.what == "features":
        features(Path(a.args[0]), Path(a.args[1]), a.clips)
    elif a.what == "data":
        training_data(Path(a.args[0]), Path(a.args[1]), a.first, a.clips)
    else:
        score(Path(a.args[0]), Path(a.args[1]), Path(a.args[2]), a.label, a.delta, a.motion, a.motion_form)
