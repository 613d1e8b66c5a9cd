"""Onset accuracy against what the same detections score by chance (s2s.alignment.chance_accuracy), in process, for
several generators on the same clips: 16 held-out generated clips (plain, 8 s) and 32 independent ones, each through
the H.264 encode and the served decode, the flow per 1/21.5 s, the seeded encoders (s2s.training.train.
encoder_features, the data stage's), one z per clip seeded by its seed, and a vocoder.

    python chance.py ENCODERS_DIR VOCODER OUT.jsonl NAME=GENERATOR [NAME=GENERATOR ...] [--generated 16]
                     [--independent 32]
    python chance.py --summary OUT.jsonl [OUT.jsonl ...]

OUT.jsonl: a row per clip (resumable: clips already in it are skipped), the scores of each generator as
s2s.alignment.OnsetScores; the summary (of one or several such files, their scores of a clip joined) is a markdown
table per set, with the clips that hold one kind alone (independent).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from s2s.alignment import onset_scores
from s2s.constants import REGNET
from s2s.export.specs import build_vocoder
from s2s.independent import INDEPENDENT_SEEDS, independent_clip
from s2s.models.checkpoints import recorded_architecture
from s2s.models.regnet import build_regnet
from s2s.repository import INPUT_ENCODERS
from s2s.synth import HELD_OUT_SEEDS, encode_clip, make_clip
from s2s.training.train import encoder_features
from s2s.video import decode_video


def main(encoders: Path, vocoder_path: Path, out: Path, generators: dict[str, Path], generated: int, independent: int):
    torch.set_num_threads(1)
    sessions = {n: ort.InferenceSession(str(encoders / f"{n}.onnx"), providers=["CPUExecutionProvider"])
                for n in ("tsn_rgb", "tsn_flow")}  # fmt: skip
    nets = {name: build_regnet("small", checkpoint=path).eval() for name, path in generators.items()}
    vocoder = build_vocoder(recorded_architecture(vocoder_path) or "melgan", vocoder_path, 0).eval()
    done = {json.loads(line)["seed"] for line in out.open()} if out.exists() else set()
    seeds = [("generated", s) for s in range(HELD_OUT_SEEDS.start, HELD_OUT_SEEDS.start + generated)]
    seeds += [("independent", s) for s in range(INDEPENDENT_SEEDS.start, INDEPENDENT_SEEDS.start + independent)]
    for kind_of_set, seed in seeds:
        if seed in done:
            continue
        clip = make_clip(seed, 8.0) if kind_of_set == "generated" else independent_clip(seed, 8.0)
        feats = encoder_features(sessions, decode_video(encode_clip(clip)).track)
        row = {"seed": seed, "set": kind_of_set, "kinds": list(clip.kinds), "truth": len(clip.onsets), "scores": {}}
        for name, net in nets.items():
            x = np.concatenate([feats[INPUT_ENCODERS.get(i, i)] for i in net.config.inputs], axis=1).astype(np.float32)
            with torch.no_grad():
                z = torch.randn(1, net.config.random_z_dim, generator=torch.Generator().manual_seed(seed))
                wave = vocoder(net(torch.from_numpy(x)[None], z).clamp(0, 1))[0].reshape(-1).numpy()
            row["scores"][name] = onset_scores(wave, REGNET.sample_rate, clip.onsets).as_dict()
        row["scores"]["own sound"] = onset_scores(clip.audio, REGNET.sample_rate, clip.onsets).as_dict()
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        cells = [f"{k}: {v['accuracy']:.2f}/{v['chance_accuracy']:.2f}" for k, v in row["scores"].items()]
        sys.stdout.write(f"{kind_of_set} {seed} " + " ".join(cells) + "\n")
        sys.stdout.flush()
    summarise([out])


def summarise(outs: list[Path]) -> None:
    rows: dict[int, dict] = {}
    for out in outs:
        for row in (json.loads(line) for line in out.read_text().splitlines() if line):
            rows.setdefault(row["seed"], row)["scores"].update(row["scores"])
    rows = list(rows.values())
    names = list(dict.fromkeys(k for r in rows for k in r["scores"]))
    for kind_of_set in ("generated", "independent"):
        group = [r for r in rows if r["set"] == kind_of_set]
        if not group:
            continue
        kinds = sorted({k for r in group for k in r["kinds"]}) if kind_of_set == "independent" else []
        header = ["generator", "onset acc.", "by chance", "above chance", "AP",
                  f"detections per clip (true {np.mean([r['truth'] for r in group]):.1f})"]  # fmt: skip
        header += [f"{k} alone ({sum(r['kinds'] == [k] for r in group)}): acc. / by chance" for k in kinds]
        sys.stdout.write(f"\n{kind_of_set} ({len(group)} clips)\n\n| " + " | ".join(header) + " |\n|---|"
                         + "---:|" * (len(header) - 1) + "\n")  # fmt: skip
        for name in names:
            s = [r["scores"][name] for r in group]
            acc, chance = np.mean([x["accuracy"] for x in s]), np.mean([x["chance_accuracy"] for x in s])
            ap, detected = np.mean([x["ap"] for x in s]), np.mean([x["detected"] for x in s])
            cells = [name, f"{acc:.3f}", f"{chance:.3f}", f"{acc - chance:+.3f}", f"{ap:.3f}", f"{detected:.1f}"]
            for kind in kinds:
                alone = [r["scores"][name] for r in group if r["kinds"] == [kind]]
                cells.append(f"{np.mean([x['accuracy'] for x in alone]):.2f} / "
                             f"{np.mean([x['chance_accuracy'] for x in alone]):.2f}")  # fmt: skip
            sys.stdout.write("| " + " | ".join(cells) + " |\n")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("paths", nargs="+", help="ENCODERS_DIR VOCODER OUT.jsonl NAME=GENERATOR ..., or OUT.jsonl")
    p.add_argument("--generated", type=int, default=16)
    p.add_argument("--independent", type=int, default=32)
    p.add_argument("--summary", action="store_true", help="only summarise OUT.jsonl")
    a = p.parse_args()
    if a.summary:
        summarise([Path(x) for x in a.paths])
    else:
        encoders, vocoder, out, *named = a.paths
        main(Path(encoders), Path(vocoder), Path(out), {n: Path(g) for n, g in (x.split("=", 1) for x in named)},
             a.generated, a.independent)  # fmt: skip
