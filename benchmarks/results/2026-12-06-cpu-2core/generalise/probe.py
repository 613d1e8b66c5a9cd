"""Generator probe, in process: features of held-out clips (generated and independent) through the served
decode and the seeded encoders (ONNX Runtime), cached; a generator checkpoint's mel for each, vocoded by a
vocoder checkpoint, scored against the clips' onsets; where the misses are (nearest detection).

    python probe.py features RUN_WITH_ENCODERS CACHE [--independent N] [--generated N]
    python probe.py score CACHE GENERATOR VOCODER [--label L] [--zero-rgb] [--delta] [--zero-flow]
                          [--motion replace|append] [--motion-suffix .motion-clean.npy]
                          [--motion-form signed|turning|change|scaled]
    python probe.py levels CACHE GENERATOR [--motion replace] [--motion-form F] [--motion-suffix S]
    python probe.py quality CACHE GENERATOR VOCODER [--label L] [--motion replace] [--motion-form F] [--zero-rgb]
        (s2s eval's sound metrics per set: hop-rate buzz, log-mel distance and ringing lost against the clips' own
        sound, for the generator + vocoder, the vocoder on the clips' true mels (the ceiling) and the own sound)
        (how loud the generator's mel is between events and how far its events rise above that, per set, with its
        inputs whole and with each part zeroed; beside the clips' own mels)

--motion: motion.py's statistics of the served flow (NAME.motion.npy beside each cached clip) in the RGB
features' place (replace) or after the features (append: 2048 + 60), or as `s2s train --generator-inputs
motion,flow` feeds them (inputs: 60 + 1024), see cached(); --zero-flow: the flow features zeroed (a generator
trained without them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from s2s.alignment import detect_onsets, envelope_correlation, score_onsets
from s2s.audio import MelSpectrogram
from s2s.constants import REGNET
from s2s.independent import INDEPENDENT_SEEDS, independent_clip
from s2s.synth import HELD_OUT_SEEDS, encode_clip, make_clip
from s2s.training.train import encoder_features
from s2s.video import decode_video


def encoder_sessions(run: Path) -> dict:
    """ONNX Runtime sessions of the seeded encoders a `s2s train` run's data stage exported, by name."""
    import onnxruntime as ort

    return {
        n: ort.InferenceSession(str(run / "encoders" / f"{n}.onnx"), providers=["CPUExecutionProvider"])
        for n in ("tsn_rgb", "tsn_flow")
    }


def features(run: Path, cache: Path, independent: int, generated: int) -> None:
    sessions = encoder_sessions(run)
    mel = MelSpectrogram()
    cache.mkdir(parents=True, exist_ok=True)
    seeds = [("independent", s) for s in range(INDEPENDENT_SEEDS.start, INDEPENDENT_SEEDS.start + independent)]
    seeds += [("generated", s) for s in range(HELD_OUT_SEEDS.start, HELD_OUT_SEEDS.start + generated)]
    for kind, seed in seeds:
        path = cache / f"{kind}_{seed}.npz"
        if path.exists():
            continue
        clip = independent_clip(seed, 8.0) if kind == "independent" else make_clip(seed, 8.0)
        pictures = decode_video(encode_clip(clip)).frames
        feats = encoder_features(sessions, pictures)
        n = len(pictures)
        target = mel(torch.from_numpy(clip.audio)[None])[0].numpy()[:, : REGNET.mel_frames_per_frame * n]
        np.savez(
            path,
            rgb=feats["tsn_rgb"],
            flow=feats["tsn_flow"],
            mel=target,
            audio=clip.audio,
            onsets=clip.onsets,
            kinds=np.array(clip.kinds),
        )
        sys.stdout.write(f"{kind} {seed} {n}\n")


def flow_delta(x: torch.Tensor) -> torch.Tensor:
    """(B, T, 2048) features -> the RGB half replaced by the flow features' change from the frame before (0 at
    the first): the change of motion as an input of its own."""
    flow = x[..., 1024:]
    return torch.cat([torch.cat([torch.zeros_like(flow[:, :1]), flow[:, 1:] - flow[:, :-1]], dim=1), flow], dim=-1)


def cached(path: Path, motion: str | None = None, suffix: str = ".motion.npy", form: str = "signed") -> dict:
    """A cached clip's arrays; ``motion`` "replace": motion.py's statistics of its served flow (PATH``suffix``)
    and their change in the RGB features' place, "append": after the features (2048 + 60); ``form``: forms.py's
    FORMS."""
    z = dict(np.load(path))
    if motion:
        from forms import with_motion  # this folder's forms.py

        z = with_motion(z, np.load(path.with_suffix(suffix)), motion, form)
    return z


def generator_input(z: dict) -> torch.Tensor:
    """A cached clip's arrays -> the generator's input (1, T, D): the first features (RGB, or motion.py's statistics
    in their place) beside the flow features, float32."""
    return torch.from_numpy(np.concatenate([z["rgb"], z["flow"]], axis=1).astype(np.float32))[None]


def rendered(paths, render, motion: str | None = None, suffix: str = ".motion.npy", form: str = "signed"):
    """For each cached clip (:func:`cached`'s ``motion``, ``suffix``, ``form``): its path, its arrays, the waveform
    ``render`` makes of them and the onsets detected in it (times, strengths)."""
    for path in paths:
        z = cached(path, motion, suffix, form)
        wave = render(z)
        yield path, z, wave, *detect_onsets(wave, REGNET.sample_rate)


class Renderer:
    """A generator checkpoint and a vocoder checkpoint: a clip's cached features -> its waveform, each clip's z the
    next draw of one seeded stream. ``zero_rgb``: a generator trained on the flow features alone; ``delta``: one
    trained on the flow features and their change (:func:`flow_delta`)."""

    def __init__(
        self, generator_path: Path, vocoder_path: Path, zero_rgb: bool = False, delta: bool = False,
        zero_flow: bool = False,
    ):  # fmt: skip
        from s2s.export.specs import build_vocoder
        from s2s.models.checkpoints import recorded_architecture
        from s2s.models.regnet import build_regnet

        self.generator = build_regnet("small", checkpoint=generator_path).eval()
        self.vocoder = build_vocoder(recorded_architecture(vocoder_path) or "melgan", vocoder_path, 0).eval()
        self.zero_rgb, self.delta, self.zero_flow = zero_rgb, delta, zero_flow
        self.noise = torch.Generator().manual_seed(0)

    def __call__(self, z) -> np.ndarray:
        x = generator_input(z)
        if self.zero_rgb:
            x[..., : z["rgb"].shape[1]] = 0
        if self.zero_flow:
            x[..., z["rgb"].shape[1] :] = 0
        if self.delta:
            x = flow_delta(x)
        with torch.no_grad():
            z_dim = self.generator.config.random_z_dim
            m = self.generator(x, torch.randn(1, z_dim, generator=self.noise)).clamp(0, 1)
            return self.vocoder(m)[0].reshape(-1).numpy()


def score(
    cache: Path,
    generator_path: Path,
    vocoder_path: Path,
    label: str,
    zero_rgb: bool = False,
    delta: bool = False,
    motion: str | None = None,
    zero_flow: bool = False,
    motion_suffix: str = ".motion.npy",
    form: str = "signed",
) -> dict:
    render = Renderer(generator_path, vocoder_path, zero_rgb, delta, zero_flow)
    out = {"label": label, "sets": {}}
    for kind in ("generated", "independent"):
        hits = truth = 0
        accs, offsets, envs, per_kind = [], [], [], {}
        clips = rendered(sorted(cache.glob(f"{kind}_*.npz")), render, motion, motion_suffix, form)
        for _, z, wave, times, strengths in clips:
            s = score_onsets(z["onsets"], times, strengths)
            hits, truth = hits + s.hits, truth + s.truth
            accs.append(s.accuracy)
            kinds = "+".join(sorted(str(k) for k in z["kinds"]))
            per_kind.setdefault(kinds, []).append(s.accuracy)
            envs.append(envelope_correlation(wave, z["audio"]))
            for t in z["onsets"]:  # the nearest detection to each true onset (9: none at all)
                offsets.append(float((times - t)[np.argmin(np.abs(times - t))]) if times.size else 9.0)
        offsets = np.array(offsets)
        missed = offsets[np.abs(offsets) > 0.1]
        out["sets"][kind] = {
            "clips": len(accs),
            "accuracy": float(np.mean(accs)),
            "pooled": hits / max(truth, 1),
            "envelope": float(np.mean(envs)),
            "per_kind": {k: [len(v), round(float(np.mean(v)), 3)] for k, v in sorted(per_kind.items())},
            "nearest_offset_hist": np.histogram(np.clip(offsets, -0.5, 0.5), bins=10, range=(-0.5, 0.5))[0].tolist(),
            "median_offset_of_misses": float(np.median(missed)) if missed.size else 0.0,
        }
    sys.stdout.write(json.dumps(out) + "\n")
    return out


def mel_levels(mel: np.ndarray) -> tuple[float, float]:
    """A mel (80, T) in [0, 1]: its floor (the median over frames of the mean over bands) and how far its loudest
    frames rise above it (99th percentile less the floor)."""
    level = mel.mean(axis=0)
    floor = float(np.median(level))
    return floor, float(np.percentile(level, 99)) - floor


def levels(cache: Path, generator_path: Path, motion: str | None, motion_suffix: str, form: str) -> dict:
    """Per set (generated, independent): mel_levels of the clips' own mels and of the generator's (z = 0) with its
    inputs whole, the flow features zeroed, and the first 1,024 inputs (RGB features or motion.py's statistics)
    zeroed; means over the clips."""
    from s2s.models.regnet import build_regnet

    generator = build_regnet("small", checkpoint=generator_path).eval()
    z_dim = generator.config.random_z_dim
    out = {}
    for kind in ("generated", "independent"):
        rows: dict[str, list] = {"own": [], "whole": [], "flow features zeroed": [], "first 1024 zeroed": []}
        for path in sorted(cache.glob(f"{kind}_*.npz")):
            z = cached(path, motion, motion_suffix, form)
            x = generator_input(z)
            variants = {"whole": x, "flow features zeroed": x.clone(), "first 1024 zeroed": x.clone()}
            variants["flow features zeroed"][..., 1024:] = 0
            variants["first 1024 zeroed"][..., :1024] = 0
            with torch.no_grad():
                for name, v in variants.items():
                    rows[name].append(mel_levels(generator(v, torch.zeros(1, z_dim)).clamp(0, 1)[0].numpy()))
            rows["own"].append(mel_levels(z["mel"]))
        out[kind] = {k: [round(float(x), 3) for x in np.mean(v, axis=0)] for k, v in rows.items()}
    sys.stdout.write(json.dumps({"generator": str(generator_path), "floor, rise": out}) + "\n")
    return out


def quality(
    cache: Path, generator_path: Path, vocoder_path: Path, label: str, zero_rgb: bool, motion: str | None,
    motion_suffix: str, form: str,
) -> dict:  # fmt: skip
    """Per set, means over the clips of s2s.quality's buzz, log-mel distance and ringing lost (as s2s eval computes
    them) for the generator + vocoder (``label``), the vocoder fed each clip's true mel and the clip's own sound."""
    from s2s.quality import hop_buzz_db, log_mel_distance_db, ringing_lost_db

    render = Renderer(generator_path, vocoder_path, zero_rgb)
    out: dict = {"label": label, "sets": {}}
    for kind in ("generated", "independent"):
        rows: dict[str, list] = {label: [], "vocoder on the true mel": [], "own sound": []}
        for path in sorted(cache.glob(f"{kind}_*.npz")):
            z = cached(path, motion, motion_suffix, form)
            with torch.no_grad():
                true = render.vocoder(torch.from_numpy(z["mel"].astype(np.float32))[None])[0].reshape(-1).numpy()
            for name, wave in ((label, render(z)), ("vocoder on the true mel", true), ("own sound", z["audio"])):
                ringing = ringing_lost_db(wave, z["audio"], z["onsets"])
                ringing = np.nan if ringing is None else ringing
                rows[name].append((hop_buzz_db(wave), log_mel_distance_db(wave, z["audio"]), ringing))
        out["sets"][kind] = {
            k: dict(
                zip(
                    ("buzz_db", "mel_distance_db", "ringing_lost_db"),
                    np.round(np.nanmean(v, axis=0), 2).tolist(),
                    strict=True,
                )
            )
            for k, v in rows.items()
        }
    sys.stdout.write(json.dumps(out) + "\n")
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("features", "score", "levels", "quality"))
    p.add_argument("args", nargs="+")
    p.add_argument("--independent", type=int, default=32)
    p.add_argument("--generated", type=int, default=16)
    p.add_argument("--label", default="")
    p.add_argument("--zero-rgb", action="store_true")
    p.add_argument("--delta", action="store_true")
    p.add_argument("--motion", choices=("replace", "append", "inputs"), help="cached(): motion.py's statistics")
    p.add_argument("--zero-flow", action="store_true")
    p.add_argument("--motion-suffix", default=".motion.npy", help="motion.py's files: .motion-clean.npy, cleaned")
    p.add_argument("--motion-form", default="signed", help="forms.py's FORMS: signed, turning, change, scaled")
    a = p.parse_args()
    if a.what == "features":
        features(Path(a.args[0]), Path(a.args[1]), a.independent, a.generated)
    elif a.what == "quality":
        quality(*(Path(x) for x in a.args[:3]), a.label, a.zero_rgb, a.motion, a.motion_suffix, a.motion_form)
    elif a.what == "levels":
        levels(Path(a.args[0]), Path(a.args[1]), a.motion, a.motion_suffix, a.motion_form)
    else:
        paths = (Path(x) for x in a.args[:3])
        score(*paths, a.label, a.zero_rgb, a.delta, a.motion, a.zero_flow, a.motion_suffix, a.motion_form)
