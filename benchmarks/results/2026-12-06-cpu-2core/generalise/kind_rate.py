"""The independent set's scenes, one event kind each, filmed again at several frame rates (same scene, same
sound, same onsets; only the camera's rate differs): is it the rate or the kind that loses onsets?

    python kind_rate.py features RUN_WITH_ENCODERS CACHE [--scenes 4] [--rates 15 21.5 30 60]
    python kind_rate.py score CACHE GENERATOR VOCODER [--label L] [--delta] [--motion replace|append]
        [--motion-form signed|turning|change|scaled]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from probe import Renderer, encoder_sessions, rendered  # this folder's probe.py

import s2s.independent as independent
from s2s.alignment import score_onsets
from s2s.synth import encode_clip
from s2s.training.train import encoder_features
from s2s.video import decode_video

KIND_OF = {"_Puck": "rebound", "_Hammer": "knock", "_Toppler": "topple"}
FIRST_SEED = 3_500_000  # apart from the first independent seeds that s2s eval scores


class _OtherKindError(Exception):
    """The scene is not of one kind alone."""


def scene_at(seed: int, kind: str, fps: float):
    """The independent clip of ``seed`` if its scene is of ``kind`` alone, filmed at ``fps``; else None."""
    film = independent._film

    def forced(rng, backdrop, things, floor_y, _fps, duration_s, seed_):
        if {KIND_OF[type(t).__name__] for t in things} != {kind}:
            raise _OtherKindError
        return film(rng, backdrop, things, floor_y, fps, duration_s, seed_)

    independent._film = forced
    try:
        return dataclasses.replace(independent.independent_clip(seed, 8.0), fps=fps)
    except _OtherKindError:
        return None
    finally:
        independent._film = film


def features(run: Path, cache: Path, scenes: int, rates: list[float]) -> None:
    sessions = encoder_sessions(run)
    cache.mkdir(parents=True, exist_ok=True)
    for kind in KIND_OF.values():
        seed, found = FIRST_SEED, 0
        while found < scenes:
            seed += 1
            if scene_at(seed, kind, rates[0]) is None:
                continue
            found += 1
            for fps in rates:
                path = cache / f"{kind}_{fps:g}_{seed}.npz"
                if path.exists():
                    continue
                clip = scene_at(seed, kind, fps)
                pictures = decode_video(encode_clip(clip)).frames
                feats = encoder_features(sessions, pictures)
                np.savez(path, rgb=feats["tsn_rgb"], flow=feats["tsn_flow"], onsets=clip.onsets)
                sys.stdout.write(f"{kind} {fps:g} {seed}\n")
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
    table: dict[str, dict[str, list[float]]] = {}
    for path, z, _, times, strengths in rendered(sorted(cache.glob("*.npz")), render, motion, form=form):
        kind, fps, _ = path.stem.split("_")
        table.setdefault(kind, {}).setdefault(fps, []).append(score_onsets(z["onsets"], times, strengths).accuracy)
    by_rate = {k: sorted(r.items(), key=lambda i: float(i[0])) for k, r in table.items()}
    out = {"label": label, "accuracy": {k: {f: round(float(np.mean(v)), 3) for f, v in r} for k, r in by_rate.items()}}
    sys.stdout.write(json.dumps(out) + "\n")
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("features", "score"))
    p.add_argument("args", nargs="+")
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--rates", type=float, nargs="+", default=[15.0, 21.5, 30.0, 60.0])
    p.add_argument("--label", default="")
    p.add_argument("--delta", action="store_true")
    p.add_argument("--motion", choices=("replace", "append"), help="probe.py's cached(): motion.py's statistics")
    p.add_argument("--motion-form", default="signed", help="forms.py's FORMS: signed, turning, change, scaled")
    a = p.parse_args()
    if a.what == "features":
        features(Path(a.args[0]), Path(a.args[1]), a.scenes, a.rates)
    else:
        score(Path(a.args[0]), Path(a.args[1]), Path(a.args[2]), a.label, a.delta, a.motion, a.motion_form)
