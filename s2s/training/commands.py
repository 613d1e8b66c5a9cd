"""``s2s dataset`` (a team's videos with sound -> training clips, features from the served encoders), ``s2s train``
(the demo weights, from generated clips) and ``s2s eval`` (their alignment score, served)."""

from __future__ import annotations

import argparse
import json

from s2s.flags import add_flags, comma_list, from_flags
from s2s.training.dataset import DatasetOptions
from s2s.training.evaluate import EvalOptions
from s2s.training.train import STAGES, TrainOptions


def register(commands: argparse._SubParsersAction) -> None:
    d = commands.add_parser(
        "dataset",
        help="your videos with their sound -> training clips, features from a running server's encoders",
        description="Cut a folder of videos with audio tracks (or a VGGSound-layout CSV and its clips) into 10 s "
        "clips: features from the s2s_features ensemble of the Triton at --url (exactly what serving computes), "
        "the sound as RegNet's mel and waveform; one .npz per clip under --output/clips. Files without sound, "
        "unreadable, too short or refused by the server are skipped and listed in dataset.json. Resumable.",
    )
    add_flags(d, DatasetOptions)
    d.set_defaults(func=run_dataset)

    t = commands.add_parser(
        "train",
        help="train the demo generator and vocoder on generated clips (CPU, resumable)",
        description="Generate clips where visible events make sounds (s2s.synth), extract TSN features with the "
        "seeded encoders, train a RegNet generator and a MelGAN vocoder. Stages are resumable; run it again "
        "to continue. --install copies the result into the package as the default demo weights.",
    )
    add_flags(t, TrainOptions)
    t.add_argument(
        "--stages", type=comma_list(str), default=STAGES, metavar="STAGES",
        help=f"comma-separated, of {','.join(STAGES)}; a stage left out uses what an earlier run left in --output "
        f"(default: {','.join(STAGES)})",
    )  # fmt: skip
    t.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    t.add_argument("--install", action="store_true", help="copy the final weights into s2s/weights/ (float16)")
    t.set_defaults(func=run_train)

    e = commands.add_parser(
        "eval",
        help="alignment score through the Triton ensemble: trained vs untrained weights on held-out clips",
        description="Generate held-out clips with known impact times, send them through the s2s ensemble of the "
        "embedded Triton (trained weights, then untrained ones), score onset accuracy, onset AP (+-0.1 s) and "
        "energy-envelope correlation.",
    )
    add_flags(e, EvalOptions)
    e.set_defaults(func=run_eval)


def run_dataset(args: argparse.Namespace) -> int:
    from s2s.training.dataset import build_dataset

    summary = build_dataset(from_flags(DatasetOptions, args))
    print(json.dumps({k: summary[k] for k in ("files", "clips", "skipped")}, indent=2))
    return 0


def run_train(args: argparse.Namespace) -> int:
    import torch

    from s2s.training.train import train
    from s2s.weights import WEIGHTS_DIR

    if args.threads:
        torch.set_num_threads(args.threads)
    result = train(from_flags(TrainOptions, args), args.stages, install_to=WEIGHTS_DIR if args.install else None)
    print(json.dumps(result, indent=2))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from s2s.training.evaluate import evaluate, report

    options = from_flags(EvalOptions, args)
    print(report(evaluate(options)))
    print(f"results: {options.output}")
    return 0
