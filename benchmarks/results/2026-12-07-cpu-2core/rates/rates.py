"""Frame rates, in process: the independent held-out clips (s2s.independent: 15 to 60 fps) decoded as served, their
flow taken as before (between consecutive 21.5 fps frames: a 15 fps picture shown twice gives a still frame, a
30 or 60 fps picture skipped a jump in speed) and as now (s2s.video.Track: each frame's picture to the stream's
one 1/21.5 s later, per 1/21.5 s), through the seeded encoders, generators and a vocoder; onset scores per rate.

    python rates.py ENCODERS_DIR VOCODER OUT.jsonl NAME=GENERATOR [NAME=GENERATOR ...] [--clips 64]
                    [--flows "per period"]

Every clip's z is drawn from a stream seeded by its seed, the same for each generator and either flow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from s2s.alignment import detect_onsets, score_onsets
from s2s.constants import REGNET
from s2s.export.specs import build_vocoder
from s2s.flow import network_inputs
from s2s.independent import INDEPENDENT_SEEDS, independent_clip
from s2s.models.checkpoints import recorded_architecture
from s2s.models.regnet import build_regnet
from s2s.synth import encode_clip
from s2s.video import Track, decode_video

FLOWS = ("consecutive", "per period")


def encode(session: ort.InferenceSession, inputs: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [session.run(None, {"frames": inputs[None, i : i + 64]})[0][0] for i in range(0, len(inputs), 64)]
    )


def main(encoders: Path, vocoder_path: Path, out: Path, generators: dict[str, Path], clips: int, flows=FLOWS) -> None:
    sessions = {n: ort.InferenceSession(str(encoders / f"{n}.onnx"), providers=["CPUExecutionProvider"])
                for n in ("tsn_rgb", "tsn_flow")}  # fmt: skip
    nets = {name: build_regnet("small", checkpoint=path).eval() for name, path in generators.items()}
    vocoder = build_vocoder(recorded_architecture(vocoder_path) or "melgan", vocoder_path, 0).eval()
    done = {json.loads(line)["seed"] for line in out.open()} if out.exists() else set()
    for seed in range(INDEPENDENT_SEEDS.start, INDEPENDENT_SEEDS.start + clips):
        if seed in done:
            continue
        clip = independent_clip(seed, 8.0)
        track = decode_video(encode_clip(clip)).track
        row = {"seed": seed, "fps": clip.fps, "kinds": list(clip.kinds), "truth": len(clip.onsets), "scores": {}}
        for flow_kind, frames in zip(FLOWS, (Track.even(track.frames), track), strict=True):
            if flow_kind not in flows:
                continue
            rgb, flow, motion = network_inputs(frames)
            made = {"rgb": encode(sessions["tsn_rgb"], rgb), "flow": encode(sessions["tsn_flow"], flow),
                    "motion": motion}  # fmt: skip
            for name, net in nets.items():
                x = np.concatenate([made[i] for i in net.config.inputs], axis=1).astype(np.float32)
                noise = torch.Generator().manual_seed(seed)
                with torch.no_grad():
                    z = torch.randn(1, net.config.random_z_dim, generator=noise)
                    mel = net(torch.from_numpy(x)[None], z).clamp(0, 1)
                    wave = vocoder(mel)[0].reshape(-1).numpy()
                s = score_onsets(clip.onsets, *detect_onsets(wave, REGNET.sample_rate))
                row["scores"][f"{name} / {flow_kind}"] = s.as_dict()
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        sys.stdout.write(f"{seed} {clip.fps} " + " ".join(f"{k}: {v['accuracy']:.2f}/{v['ap']:.2f}"
                                                         for k, v in row["scores"].items()) + "\n")  # fmt: skip
        sys.stdout.flush()
    summarise(out)


def summarise(out: Path) -> None:
    rows = [json.loads(line) for line in out.open()]
    keys = list(rows[0]["scores"])
    groups = {"all": rows} | {
        f"{r:g} fps": [x for x in rows if x["fps"] == r] for r in sorted({x["fps"] for x in rows})
    }
    sys.stdout.write("| clips | " + " | ".join(f"{k}: acc. / AP" for k in keys) + " |\n")
    for label, group in groups.items():
        cells = [f"{np.mean([g['scores'][k]['accuracy'] for g in group]):.3f} / "
                 f"{np.mean([g['scores'][k]['ap'] for g in group]):.3f}" for k in keys]  # fmt: skip
        sys.stdout.write(f"| {label} ({len(group)}) | " + " | ".join(cells) + " |\n")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("encoders", type=Path)
    p.add_argument("vocoder", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("generators", nargs="+", help="NAME=CHECKPOINT")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--summary", action="store_true", help="only summarise OUT")
    p.add_argument("--flows", default=",".join(FLOWS), help=f"which of {FLOWS}, comma-separated")
    a = p.parse_args()
    if a.summary:
        summarise(a.out)
    else:
        main(a.encoders, a.vocoder, a.out, dict(g.split("=", 1) for g in a.generators), a.clips, a.flows.split(","))
