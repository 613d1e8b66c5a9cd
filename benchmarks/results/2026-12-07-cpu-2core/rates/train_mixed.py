"""`s2s train`'s generator stage (its options, losses, schedule, seeding, checkpoints) on the data stage's clips of
several runs together, e.g. plain clips and wide ones (other frame rates, backgrounds, blur, shake, kinds), whose
flow is now measured over one 1/21.5 s at any rate.

    python train_mixed.py OUT DATA [DATA ...] [--inputs motion,flow] [--seed 0] [--steps 5000] [--adversarial W]

DATA: a `s2s train --stages data` run's data folder; the first one's encoders.json names the encoders.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from s2s.training.train import ClipData, TrainOptions, train_generator

p = argparse.ArgumentParser()
p.add_argument("out", type=Path)
p.add_argument("data", type=Path, nargs="+")
p.add_argument("--inputs", default="motion,flow")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=5000)
p.add_argument("--adversarial", type=float, default=0.0, help="s2s train --generator-adversarial-weight")
a = p.parse_args()
torch.set_num_threads(1)
options = TrainOptions(output=a.out, generator_inputs=a.inputs, seed=a.seed, generator_steps=a.steps,
                       generator_adversarial_weight=a.adversarial)  # fmt: skip
paths = sorted(f for d in a.data for f in d.glob("clip_*.npz"))
fingerprints = json.loads((a.data[0].parent / "encoders.json").read_text())
a.out.mkdir(parents=True, exist_ok=True)
print(train_generator(options, ClipData(paths, options.inputs), fingerprints), len(paths))  # noqa: T201
