"""Where the independent clips' log-mel distance comes from: the clips (s2s.independent, 8 s) decoded as served, their
flow per 1/21.5 s, through the seeded encoders, a generator and a vocoder, in process; the distance of the made
sound's RegNet log-mel to the clip's own (s2s.quality), over all frames and split by the own sound's frame level
(quietest third: the room tone between events; loudest third: the events), with the signed difference there (made
minus own, dB: above 0 the made sound is louder), and the level-matched distance (s2s.quality.log_mel_distances_db:
what is left when the made sound is turned up or down as a whole by the gain that brings it closest to the own).

    python logmel_split.py ENCODERS_DIR OUT.jsonl NAME=GENERATOR:VOCODER [...] [--clips 32]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from s2s.audio import mel_spectrogram_librosa
from s2s.constants import REGNET
from s2s.export.specs import build_vocoder
from s2s.flow import network_inputs
from s2s.independent import INDEPENDENT_SEEDS, independent_clip
from s2s.models.checkpoints import recorded_architecture
from s2s.models.regnet import build_regnet
from s2s.synth import encode_clip
from s2s.video import decode_video

SPLITS = ("all", "quiet third", "loud third")


def encode(session: ort.InferenceSession, inputs: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [session.run(None, {"frames": inputs[None, i : i + 64]})[0][0] for i in range(0, len(inputs), 64)]
    )


def split_distance(made: np.ndarray, own: np.ndarray) -> dict[str, list[float]]:
    """{split: [mean |difference| dB, mean signed difference dB, level-matched mean |difference| dB]} over the own
    sound's frames of that split."""
    n = min(made.size, own.size)
    a, b = (mel_spectrogram_librosa(np.asarray(x[:n], np.float32), REGNET) * -REGNET.min_level_db for x in (made, own))
    level = b.mean(axis=0)
    low, high = np.quantile(level, [1 / 3, 2 / 3])
    frames = {"all": np.ones_like(level, bool), "quiet third": level <= low, "loud third": level >= high}
    difference = a - b
    matched = np.abs(difference - np.median(difference))
    return {k: [float(np.abs(difference)[:, f].mean()), float(difference[:, f].mean()), float(matched[:, f].mean())]
            for k, f in frames.items()}  # fmt: skip


def main(encoders: Path, out: Path, pairs: dict[str, tuple[Path, Path]], clips: int) -> None:
    sessions = {n: ort.InferenceSession(str(encoders / f"{n}.onnx"), providers=["CPUExecutionProvider"])
                for n in ("tsn_rgb", "tsn_flow")}  # fmt: skip
    nets = {
        name: (build_regnet("small", checkpoint=g).eval(), build_vocoder(recorded_architecture(v) or "melgan", v, 0))
        for name, (g, v) in pairs.items()
    }
    for seed in range(INDEPENDENT_SEEDS.start, INDEPENDENT_SEEDS.start + clips):
        clip = independent_clip(seed, 8.0)
        rgb, flow, motion = network_inputs(decode_video(encode_clip(clip)).track)
        made = {"rgb": encode(sessions["tsn_rgb"], rgb), "flow": encode(sessions["tsn_flow"], flow), "motion": motion}
        row = {"seed": seed, "fps": clip.fps, "kinds": list(clip.kinds), "splits": {}}
        for name, (net, vocoder) in nets.items():
            x = np.concatenate([made[i] for i in net.config.inputs], axis=1).astype(np.float32)
            with torch.no_grad():
                z = torch.randn(1, net.config.random_z_dim, generator=torch.Generator().manual_seed(seed))
                wave = vocoder(net(torch.from_numpy(x)[None], z).clamp(0, 1))[0].reshape(-1).numpy()
            row["splits"][name] = split_distance(wave, clip.audio)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
    summarise(out)


def summarise(out: Path) -> None:
    rows = [json.loads(line) for line in out.open()]
    heads = " | ".join(f"{s}: distance, made minus own, level-matched (dB)" for s in SPLITS)
    sys.stdout.write(f"| generator / vocoder | {heads} |\n|---|" + "---:|" * len(SPLITS) + "\n")
    for name in rows[0]["splits"]:
        cells = [", ".join(f"{np.mean([r['splits'][name][s][i] for r in rows]):{'+' if i == 1 else ''}.1f}"
                           for i in range(3)) for s in SPLITS]  # fmt: skip
        sys.stdout.write(f"| {name} | " + " | ".join(cells) + " |\n")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("encoders", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("pairs", nargs="+", help="NAME=GENERATOR:VOCODER")
    p.add_argument("--clips", type=int, default=32)
    a = p.parse_args()
    pairs = {}
    for pair in a.pairs:
        name, paths = pair.split("=", 1)
        generator, vocoder = paths.split(":", 1)
        pairs[name] = (Path(generator), Path(vocoder))
    main(a.encoders, a.out, pairs, a.clips)
