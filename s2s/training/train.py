"""``s2s train``: the demo weights, learnt on CPU from generated clips (s2s.synth), or weights learnt from a
team's own videos (``--data``: the train split of a dataset made by ``s2s dataset``, whose features came
from the served encoders; it takes the place of the data stage).

Three resumable stages under ``--output`` (a stage that finished is skipped; one that was interrupted
continues from its last checkpoint):

1. ``data``: generated clips (``--variety``: s2s.synth's plain or wide clips) -> the serving pipeline's
   network inputs (same optical flow, same uint8 layout; plain clips are drawn at 21.5 fps and skip the
   codec, wide ones at their own frame rates go through H.264 and the served decode) -> TSN features from
   the seeded encoders, run as the exported ONNX graphs in ONNX Runtime, and the motion statistics of the
   flow (s2s.motion); plus each clip's mel spectrogram (the RegNet recipe) and waveform.
2. ``generator``: a RegNet generator (``--generator-config``, default ``small``; fed ``--generator-inputs``:
   the TSN features, or s2s.motion's statistics of the flow and the flow features) on random windows of
   ``--window-frames`` frames: L1 + L2 between its mel and the clip's (with ``--generator-adversarial-weight``
   also a least-squares adversarial loss from a discriminator that sees the mel beside the features).
   Checkpoints in the reference layout (``checkpoint_XXXXXX_netG``) that also record which encoder weights
   produced the features, so that ``s2s export`` can refuse to pair the generator with other encoders.
3. ``vocoder``: MelGAN, or with ``--vocoder istft`` the frequency-domain vocoder of s2s.models.istft, on (mel,
   waveform) segments: ``--vocoder-steps`` with a multi-resolution STFT loss and a mel loss (quick on a CPU,
   learns the sound's envelope and timing; the istft vocoder reads fresh noise each step and also learns
   with the hop-periodic loss: :data:`SPECTRAL_RECIPES`), then
   ``--vocoder-adversarial-steps`` against MelGAN's multi-scale discriminator and a period discriminator
   at the hop, with feature matching, a heavy mel loss (HiFi-GAN's balance of losses), the spectral
   convergence of the linear mel magnitudes (``--vocoder-linear-weight``: the loud bins, where impacts
   ring) and the hop-periodic loss (:func:`hop_periodic_loss`; s2s.training.adversarial): aimed at the
   steady buzz at the hop rate that spectral losses leave; then ``--vocoder-finetune-steps`` with the
   spectral losses again. ``--vocoder-predicted-mels``: in a share of the adversarial and fine-tune steps'
   segments the mel is the generator's prediction for the clip, paired with the clip's own sound
   (HiFi-GAN's fine-tuning on predicted mels), so the vocoder learns to make real sound of the smooth mels
   it is served. Checkpoints as ``best_netG.pt`` (MelGAN's weights in the official layout), each
   recording its network (``architecture``: what ``s2s export`` and ``s2s eval`` build from it).

Loss curves go to ``<output>/losses.png`` and ``losses.json``. ``--install`` copies the final weights,
as float16, to the package's demo weights (``s2s/weights/``) that ``s2s export`` uses by default.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s2s.audio import MelSpectrogram, normalize_db
from s2s.constants import REGNET
from s2s.errors import OptionError, S2SError
from s2s.flags import flag
from s2s.models.checkpoints import portable_path, state_fingerprint, torch_load
from s2s.models.istft import ISTFTVocoder, istft_checkpoint
from s2s.models.melgan import MelGANGenerator, melgan_checkpoint
from s2s.models.regnet import (
    CONFIGS,
    RegNetGenerator,
    build_regnet,
    parse_inputs,
    regnet_config,
    save_regnet_checkpoint,
    with_inputs,
)
from s2s.progress import Progress
from s2s.repository import INPUT_ENCODERS, INPUTS_REVISION, REGNET_INPUTS
from s2s.synth import HELD_OUT_SEEDS, VARIETIES, encode_clip, make_clip
from s2s.training.adversarial import (
    MelDiscriminator,
    VocoderDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from s2s.video import Track
from s2s.weights import DEMO_GENERATOR, DEMO_VOCODER, WEIGHTS_DIR

log = logging.getLogger(__name__)

#: the stages, in the order they run
STAGES = ("data", "generator", "vocoder")
#: the vocoder's adversarial steps (after the spectral ones) and the weights of their losses. Off by
#: default: the defaults are the recipe of the shipped demo weights until these beat it on every metric
#: (benchmarks/README.md). HiFi-GAN's balance: the mel loss dominates (45 on natural-log mels there; here on
#: RegNet's [0, 1] dB scale), feature matching 2, the adversarial loss 1: with MelGAN's 10 on feature
#: matching and 1 on the mel loss the vocoder drifted from the clip's spectrum (too loud in quiet passages)
ADVERSARIAL_STEPS = 0
ADVERSARIAL_WEIGHT = 1.0
ADVERSARIAL_MEL_WEIGHT = 45.0
FEATURE_MATCHING_WEIGHT = 2.0
PERIODIC_WEIGHT = 3.0
#: of the spectral convergence of the linear mel magnitudes in the adversarial steps: the mel loss above is
#: on a dB scale, where every bin counts alike; this one weighs the loud bins, the impacts' ringing modes
LINEAR_MEL_WEIGHT = 5.0


@dataclass(frozen=True)
class SpectralRecipe:
    """How a vocoder network learns in the spectral steps (the multi-resolution STFT loss, plus these)."""

    steps: int  #: the default of --vocoder-steps
    mel_weight: float  #: of the L1 mel loss on RegNet's [0, 1] dB scale
    periodic_weight: float  #: of the hop-periodic loss
    betas: tuple[float, float]  #: Adam's


#: per vocoder network (``--vocoder``). MelGAN: the shipped demo vocoder's recipe. istft (s2s.models.istft):
#: HiFi-GAN's mel weight, Adam betas as in its adversarial steps, and the hop-periodic loss at 10 (with the
#: noise it reads it can write another phase each frame; the loss tells it where: at 3 the buzz on the true mel
#: was 9.7 dB after 3,000 steps, at 10 5.0 after 2,000); 0.13 s a step at one thread, a fifth of MelGAN's, so it
#: gets more steps (benchmarks/README.md, "An iSTFT vocoder")
SPECTRAL_RECIPES = {
    "melgan": SpectralRecipe(steps=1500, mel_weight=1.0, periodic_weight=0.0, betas=(0.9, 0.999)),
    "istft": SpectralRecipe(steps=6000, mel_weight=45.0, periodic_weight=10.0, betas=(0.8, 0.99)),
}


class MissingStageError(S2SError):
    """A stage needs what an earlier stage makes, and it is not in the output folder."""


class ResumeError(S2SError):
    """A resume file holds a network this version cannot continue (its architecture changed)."""


@dataclass(frozen=True)
class TrainOptions:
    output: Path = flag(Path("runs/train"), "--output", "folder of the data, checkpoints and loss curves")
    #: a dataset made by `s2s dataset` (its train split) instead of generated clips
    data: Path | None = flag(None, "--data", "train on the train split of a dataset made by `s2s dataset` "
                             "instead of generated clips", type=Path)  # fmt: skip
    #: seeds first_seed .. first_seed + clips - 1
    clips: int = flag(80, "--clips", "training clips")
    clip_seconds: float = flag(6.0, "--clip-seconds", "length of each training clip, seconds")
    first_seed: int = flag(0, "--first-seed", "seed of the first training clip")
    variety: str = flag("plain", "--variety", "what the generated clips draw (s2s.synth): plain, or wide (more "
                        "event kinds and shapes, other backgrounds and frame rates, blur, shake, noise)",
                        choices=VARIETIES)  # fmt: skip
    flow_method: str = "dis"
    encoder_seed: int = 0  #: `s2s export --seed`: RGB encoder seed, flow encoder seed + 1
    generator_config: str = flag("small", "--generator-config", "RegNet configuration", choices=tuple(CONFIGS))
    #: the shipped demo weights' (RegNet's); motion,flow: benchmarks/README.md, "A generator fed the motion
    #: statistics"
    generator_inputs: str = flag(
        ",".join(REGNET_INPUTS), "--generator-inputs", "what the generator is fed, in order: rgb, flow (the TSN "
        "features of the frames and of their flow), motion (s2s.motion's statistics of the flow); its checkpoint "
        "records them and `s2s export` builds the ensemble that makes them",
    )  # fmt: skip
    #: 2 s windows (the generator is convolutional + LSTM: serves 10 s windows)
    window_frames: int = flag(43, "--window-frames", "frames per generator training window")
    batch: int = flag(8, "--batch", "batch size")
    generator_steps: int = flag(5000, "--generator-steps", "generator optimisation steps")
    generator_lr: float = 1e-3
    generator_adversarial_weight: float = flag(
        0.0, "--generator-adversarial-weight", "weight of a least-squares adversarial loss on the generator's mels, "
        "from a discriminator that sees each window's mel beside its features, next to the L1 + L2 mel loss (0: "
        "none; benchmarks/README.md, \"An adversarial loss on the generator's mels\")",
    )  # fmt: skip
    generator_discriminator_lr: float = 2e-4
    vocoder: str = flag("melgan", "--vocoder", "vocoder network: MelGAN (time domain) or istft (s2s.models.istft: "
                        "writes the STFT; renders the impacts' ringing)", choices=tuple(SPECTRAL_RECIPES))  # fmt: skip
    vocoder_steps: int | None = flag(None, "--vocoder-steps", "vocoder steps with spectral losses only", type=int,
                                     shown="the network's recipe: 1500 melgan, 6000 istft")  # fmt: skip
    vocoder_lr: float = 5e-4
    vocoder_adversarial_steps: int = flag(
        ADVERSARIAL_STEPS, "--vocoder-adversarial-steps", "vocoder steps after those against a multi-scale and a "
        "hop-period discriminator, with feature matching (0: none)",
    )  # fmt: skip
    vocoder_adversarial_lr: float = flag(2e-4, "--vocoder-adversarial-lr", "learning rate of the adversarial "
                                         "vocoder steps (cosine decay to 5 %)")  # fmt: skip
    discriminator_lr: float = 2e-4
    vocoder_finetune_steps: int = flag(
        0, "--vocoder-finetune-steps", "vocoder steps after all others with the spectral losses, on the clips' own "
        "mels or (--vocoder-predicted-mels) the generator's predictions of them (0: none)",
    )  # fmt: skip
    vocoder_finetune_lr: float = flag(2e-4, "--vocoder-finetune-lr", "learning rate of the fine-tune vocoder steps "
                                      "(cosine decay to 5 %)")  # fmt: skip
    adversarial_weight: float = ADVERSARIAL_WEIGHT  #: of the least-squares adversarial loss, next to the spectral ones
    adversarial_mel_weight: float = ADVERSARIAL_MEL_WEIGHT  #: of the mel loss in the adversarial steps (1 before)
    feature_matching_weight: float = FEATURE_MATCHING_WEIGHT
    periodic_weight: float = flag(
        PERIODIC_WEIGHT, "--vocoder-periodic-weight", "weight of the hop-periodic loss in the adversarial vocoder "
        "steps (0: none)",
    )  # fmt: skip
    linear_mel_weight: float = flag(
        LINEAR_MEL_WEIGHT, "--vocoder-linear-weight", "weight of the spectral convergence of the linear mel "
        "magnitudes (the loud bins: the impacts' ringing) in the adversarial vocoder steps (0: none)",
    )  # fmt: skip
    predicted_mels: float = flag(
        0.0, "--vocoder-predicted-mels", "share of the adversarial and fine-tune vocoder steps' segments whose mel is "
        "the generator's prediction for the clip (this run's generator stage), paired with the clip's own sound",
    )  # fmt: skip
    vocoder_segment_frames: int = 32  #: mel frames per vocoder training segment (x 256 samples)
    checkpoint_every: int = flag(250, "--checkpoint-every", "steps between checkpoints")
    seed: int = flag(0, "--seed", "seed of the training's draws: the generator's first weights, the windows and "
                     "segments, the noise")  # fmt: skip

    def __post_init__(self) -> None:
        if self.vocoder not in SPECTRAL_RECIPES:
            raise OptionError(f"unknown vocoder {self.vocoder!r}; s2s train makes {', '.join(SPECTRAL_RECIPES)}")
        if not 0.0 <= self.predicted_mels <= 1.0:
            raise OptionError(f"--vocoder-predicted-mels is a share of the segments, 0 to 1, "
                              f"got {self.predicted_mels:g}")  # fmt: skip
        parse_inputs(self.generator_inputs)
        if self.generator_adversarial_weight < 0:
            raise OptionError(f"--generator-adversarial-weight is a loss weight, 0 or more, "
                              f"got {self.generator_adversarial_weight:g}")  # fmt: skip
        if self.predicted_mels and not (self.vocoder_adversarial_steps or self.vocoder_finetune_steps):
            raise OptionError("--vocoder-predicted-mels applies to the adversarial vocoder steps and the fine-tune "
                              "ones: give --vocoder-adversarial-steps or --vocoder-finetune-steps too")  # fmt: skip

    def generator_checkpoint(self) -> Path:
        """The generator's final checkpoint (what the generator stage ends with)."""
        return self.output / "generator" / f"checkpoint_{self.generator_steps:06d}_netG"

    def vocoder_checkpoint(self) -> Path:
        """The vocoder's final checkpoint."""
        return self.output / "vocoder" / "best_netG.pt"

    @property
    def inputs(self) -> tuple[str, ...]:
        """--generator-inputs' names, in order."""
        return parse_inputs(self.generator_inputs)

    @property
    def spectral_recipe(self) -> SpectralRecipe:
        return SPECTRAL_RECIPES[self.vocoder]

    @property
    def spectral_steps(self) -> int:
        """--vocoder-steps, else the network's recipe's."""
        return self.spectral_recipe.steps if self.vocoder_steps is None else self.vocoder_steps


# -------------------------------------------------------------------------------------------- utils
def encoder_exports(options: TrainOptions):
    """The TSN encoders exactly as ``s2s export --seed encoder_seed`` builds them."""
    from s2s.export.specs import ExportOptions, build_exports

    exports = build_exports(ExportOptions(seed=options.encoder_seed), ("tsn_rgb", "tsn_flow"), warn_noise=False)
    log.info("TSN encoders: seeded (%s); the generator learns on their features",
             ", ".join(f"{e.name} seed {e.source['seed']}" for e in exports))  # fmt: skip
    return exports


def encoder_fingerprints(exports) -> dict[str, str]:
    return {e.name: state_fingerprint(e.module) for e in exports}


# ---------------------------------------------------------------------------------------- stage 1
def data_paths(options: TrainOptions) -> list[Path]:
    """Where the data stage keeps each training clip's features, mel and waveform."""
    data = options.output / "data"
    prefix = "clip" if options.variety == "plain" else f"clip_{options.variety}"
    return [data / f"{prefix}_{seed:07d}.npz" for seed in range(options.first_seed, options.first_seed + options.clips)]


def encoder_features(sessions: dict, pictures: np.ndarray | Track, flow_method: str = "dis") -> dict[str, np.ndarray]:
    """Frames at the served rate and size (N, 256, 340, 3) BGR, or a decoded video's s2s.video.Track (what preprocess
    computes the flow of) -> ``{"tsn_rgb", "tsn_flow": (N, 1024), "motion":
    (N, 60)}``: the encoders' ONNX Runtime ``sessions`` (by name) on the RGB and flow inputs, 64 frames a run, and
    the motion statistics of the flow (s2s.motion)."""
    from s2s.flow import network_inputs

    rgb, flow, motion = network_inputs(pictures, flow_method)
    feats = {"motion": motion}
    for name, inputs in (("tsn_rgb", rgb), ("tsn_flow", flow)):
        runs = range(0, len(inputs), 64)
        feats[name] = np.concatenate(
            [sessions[name].run(None, {"frames": inputs[None, i : i + 64]})[0][0] for i in runs]
        )
    return feats


def prepare_data(options: TrainOptions) -> list[Path]:
    """Features, mel and waveform of every training clip (cached per clip)."""
    import onnxruntime as ort

    from s2s.export.onnx_export import export_onnx
    from s2s.video import decode_video

    paths = data_paths(options)
    # remade: clips cached before the motion statistics, and decoded ones (other frame rates) cached before their
    # flow was measured over one recipe period (s2s.video.Track)
    needs = ("motion",) if options.variety == "plain" else ("motion", "flow_per_period")
    todo = [p for p in paths if not p.exists() or lacking(p, needs)]
    if not todo:
        return paths
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    exports = encoder_exports(options)
    fingerprints = encoder_fingerprints(exports)
    (options.output / "encoders.json").write_text(json.dumps(fingerprints, indent=2) + "\n")
    sessions = {}
    for export in exports:
        onnx_path = options.output / "encoders" / f"{export.name}.onnx"
        if not onnx_path.exists():
            export_onnx(export, onnx_path)
        sessions[export.name] = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    mel = MelSpectrogram()
    progress = Progress(len(paths), "data", len(paths) - len(todo))
    for path in todo:
        seed = int(path.stem.rsplit("_", 1)[1])
        clip = make_clip(seed, options.clip_seconds, variety=options.variety)
        pictures = clip.frames
        if options.variety != "plain":  # other frame rates: through the served decode (H.264, 21.5 fps)
            pictures = decode_video(encode_clip(clip)).track
        feats = encoder_features(sessions, pictures, options.flow_method)
        n = len(pictures)
        target = mel(torch.from_numpy(clip.audio)[None])[0].numpy()[:, : REGNET.mel_frames_per_frame * n]
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, rgb=feats["tsn_rgb"].astype(np.float16), flow=feats["tsn_flow"].astype(np.float16),
                 motion=feats["motion"], mel=target.astype(np.float16), audio=clip.audio,
                 onsets=clip.onsets, flow_per_period=np.array(True))  # fmt: skip
        partial.replace(path)
        progress.update(note=f"seed {seed}")
    return paths


def dataset_paths(options: TrainOptions) -> list[Path]:
    """The train split of ``options.data`` (a dataset made by ``s2s dataset``), without the clips shorter
    than a training window."""
    from s2s.training.dataset import clip_paths, inputs_revision

    revision = inputs_revision(options.data)
    if revision != INPUTS_REVISION:
        raise OptionError(f"{options.data}: its clips hold the generator inputs a server computed before "
                          f"(revision {revision}; s2s.repository.INPUTS_REVISION): trained on, the generator would "
                          f"be served other inputs (revision {INPUTS_REVISION}) than it learnt from: make the "
                          "dataset again through a current server, into a new --output")  # fmt: skip
    paths, kept = clip_paths(options.data, "train"), []
    for path in paths:
        with np.load(path) as clip:
            absent = first_absent(clip.files, options.inputs)
            if absent:
                raise OptionError(f"{path}: the dataset's clips hold no {absent} (made before `s2s dataset` stored "
                                  f"it): make the dataset again into a new --output, or train on other "
                                  f"--generator-inputs than {options.generator_inputs}")  # fmt: skip
            if clip["rgb"].shape[0] >= options.window_frames:
                kept.append(path)
    if len(kept) < len(paths):
        log.warning("%s: %d of %d train clips are shorter than a training window (%d frames), left out",
                    options.data, len(paths) - len(kept), len(paths), options.window_frames)  # fmt: skip
    if not kept:
        raise OptionError(f"{options.data}: no train clip of at least {options.window_frames} frames")
    return kept


def first_absent(files: list[str], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` (arrays of a clip file: the generator inputs, s2s.repository.GENERATOR_INPUTS' names,
    or a marker) not among a clip file's ``files``; None when it holds them all."""
    return next((name for name in names if name not in files), None)


def lacking(path: Path, names: tuple[str, ...]) -> str | None:
    """:func:`first_absent` of the clip file at ``path``."""
    with np.load(path) as clip:
        return first_absent(clip.files, names)


class ClipData:
    """Training clips: per clip the generator's ``inputs`` joined frame by frame (n, width), the mel and the
    waveform."""

    def __init__(self, paths: list[Path], inputs: tuple[str, ...]) -> None:
        self.clips = []
        for p in paths:
            with np.load(p) as z:
                features = np.concatenate([z[name] for name in inputs], axis=1).astype(np.float32)
                self.clips.append((features, z["mel"].astype(np.float32), z["audio"].astype(np.float32)))

    def windows(self, rng: random.Random, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        scale = REGNET.mel_frames_per_frame
        for _ in range(batch):
            features, mel, _ = self.clips[rng.randrange(len(self.clips))]
            start = rng.randrange(0, features.shape[0] - frames + 1)
            xs.append(features[start : start + frames])
            ys.append(mel[:, scale * start : scale * (start + frames)])
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))

    def segments(
        self, rng: random.Random, batch: int, mel_frames: int, predicted: list | None = None, share: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` (mel, waveform) segments of random clips; with ``predicted`` (a mel per clip), that mel
        stands in for the clip's own in a ``share`` of them (drawn per segment)."""
        mels, audios = [], []
        hop = REGNET.hop_length
        for _ in range(batch):
            index = rng.randrange(len(self.clips))
            _, mel, audio = self.clips[index]
            if predicted is not None and rng.random() < share:
                mel = predicted[index]
            start = rng.randrange(0, min(mel.shape[1], audio.size // hop) - mel_frames + 1)
            mels.append(mel[:, start : start + mel_frames])
            audios.append(audio[start * hop : (start + mel_frames) * hop])
        return torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(audios))


# ------------------------------------------------------------------------------------- stages 2, 3
class STFTLoss(nn.Module):
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, averaged over resolutions."""

    def __init__(self, resolutions=((512, 128), (1024, 256), (2048, 512))) -> None:
        super().__init__()
        self.resolutions = resolutions

    def forward(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = y.new_zeros(())
        for n_fft, hop in self.resolutions:
            window = torch.hann_window(n_fft, device=y.device)
            a = torch.stft(y, n_fft, hop, window=window, return_complex=True).abs().clamp_min(1e-7)
            b = torch.stft(target, n_fft, hop, window=window, return_complex=True).abs().clamp_min(1e-7)
            loss = loss + torch.linalg.norm(a - b) / torch.linalg.norm(b) + (a.log() - b.log()).abs().mean()
        return loss / len(self.resolutions)


@dataclass
class Part:
    """A network being trained, with its optimiser and learning-rate schedule."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    @classmethod
    def cosine(cls, model: nn.Module, lr: float, steps: int, betas=(0.9, 0.999)) -> Part:
        """Adam with cosine decay to 5 % of ``lr`` over ``steps``."""
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=betas)
        decay = lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(1, steps)))  # noqa: E731
        return cls(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, decay))

    def update(self, loss: torch.Tensor) -> None:
        """One optimisation step on ``loss`` (gradients clipped to norm 1)."""
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()


def hop_periodic_loss(y: torch.Tensor, target: torch.Tensor, hop: int = REGNET.hop_length) -> torch.Tensor:
    """How far the part of each segment that repeats every ``hop`` samples is from the target's, relative
    to the target's level: segments (B, N), N a multiple of ``hop``, aligned to the mel frames.

    A vocoder that upsamples by ``hop`` with transposed convolutions adds the same waveform to every
    frame (its biases and uneven kernel overlaps): a tone on the harmonics of sample_rate / hop. In
    quiet passages it is most of what the vocoder outputs, and the spectral losses above barely see it;
    the mean of the frames over a segment, phase by phase, is exactly that waveform (a natural sound's
    averages out). Relative to the level of each segment, so quiet ones count as much as loud ones.
    """
    periodic = lambda x: x.reshape(x.shape[0], -1, hop).mean(1)  # noqa: E731
    level = target.square().mean(1, keepdim=True).sqrt() + 1e-3
    return ((periodic(y) - periodic(target)).abs() / level).mean()


def _train_loop(name: str, options: TrainOptions, parts: dict[str, Part], steps: int, step_fn, save_fn):
    """``step_fn(rng, step)`` (it updates ``parts``, returns the loss to record) until ``steps``; resumable
    from ``<output>/<name>/resume.pt``; returns the loss history."""
    folder = options.output / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(options.seed)
    torch.manual_seed(options.seed)
    step, history = 0, []
    resume = folder / "resume.pt"
    if resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=False)
        saved = state.get("parts") or {next(iter(parts)): state}  # files of one network kept it at the top
        for key, part in parts.items():
            if key not in saved:
                continue  # a part this run adds (a discriminator): it starts now
            try:
                if "model" in saved[key]:  # kept once per network, with the first part that trains it
                    part.model.load_state_dict(saved[key]["model"])
            except RuntimeError as exc:  # another architecture (the discriminator before its hop-period part)
                detail = " ".join(str(exc).split())[:300]
                raise ResumeError(f"{resume}: its {key} does not fit this version's ({detail}): resume it with the "
                                  "version that wrote it, or train into a new --output") from None  # fmt: skip
            part.optimizer.load_state_dict(saved[key]["optimizer"])
            part.scheduler.load_state_dict(saved[key]["scheduler"])
        step, history = state["step"], state["history"]
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        log.info("%s: resuming at step %d", name, step)
    for part in parts.values():
        part.model.train()
    keeper: dict[int, str] = {}  # each network's weights are saved with the first part that trains it
    for key, part in parts.items():
        keeper.setdefault(id(part.model), key)
    progress = Progress(steps, name, step)
    running = []
    while step < steps:
        running.append(step_fn(rng, step))
        step += 1
        if step % 25 == 0 or step == steps:
            history.append((step, float(np.mean(running))))
            running = []
            progress.update(25 if step % 25 == 0 else step % 25, f"loss {history[-1][1]:.4f}")
        if step % options.checkpoint_every == 0 or step == steps:
            for part in parts.values():
                part.model.eval()
            save_fn(folder, step)
            for part in parts.values():
                part.model.train()
            state = {
                "parts": {key: {"optimizer": part.optimizer.state_dict(), "scheduler": part.scheduler.state_dict()}
                          | ({"model": part.model.state_dict()} if keeper[id(part.model)] == key else {})
                          for key, part in parts.items()},
                "step": step, "history": history, "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
            }  # fmt: skip
            torch.save(state, folder / "resume.partial")
            (folder / "resume.partial").replace(resume)
    for part in parts.values():
        part.model.eval()
    return history


def train_generator(options: TrainOptions, data: ClipData, fingerprints: dict[str, str]) -> Path:
    torch.manual_seed(options.seed)  # its first weights: the same for a seed whatever ran before in the process
    model = RegNetGenerator(with_inputs(regnet_config(options.generator_config), options.inputs))
    z_dim = model.config.random_z_dim

    parts = {"generator": Part.cosine(model, options.generator_lr, options.generator_steps)}
    weight = options.generator_adversarial_weight
    if weight:  # only then is there a discriminator to train and keep in the resume file
        critic = MelDiscriminator(model.config.visual_dim)
        parts["mel_discriminator"] = Part.cosine(critic, options.generator_discriminator_lr, options.generator_steps,
                                                 betas=(0.5, 0.9))  # fmt: skip

    def step(rng, _step: int) -> float:
        x, y = data.windows(rng, options.batch, options.window_frames)
        out = model(x, torch.randn(x.shape[0], z_dim))
        loss = (out - y).abs().mean() + (out - y).square().mean()
        if weight:
            parts["mel_discriminator"].update(discriminator_loss(critic(y, x), critic(out.detach(), x)))
            loss = loss + weight * generator_adversarial_loss(critic(out, x))
        parts["generator"].update(loss)
        return loss.item()

    provenance = _provenance(options, fingerprints, len(data.clips))  # the same for every checkpoint

    def save(folder: Path, step: int) -> None:
        path = folder / f"checkpoint_{step:06d}_netG"
        save_regnet_checkpoint(model, path, iteration=step, lr=options.generator_lr, extra=provenance)

    history = _train_loop("generator", options, parts, options.generator_steps, step, save)
    _save_history(options, "generator", history)
    return options.generator_checkpoint()


def predicted_mels(options: TrainOptions, data: ClipData) -> list[np.ndarray]:
    """What this run's generator (its final checkpoint) makes of each training clip, as served: the clip's
    features in one pass, seeded noise, clamped to [0, 1] (HiFi-GAN's fine-tuning on predicted mels: the
    vocoder learns to turn the generator's smooth mels into the clip's own sound)."""
    path = options.generator_checkpoint()
    if not path.is_file():
        raise MissingStageError(f"--vocoder-predicted-mels needs the generator's final checkpoint ({path}): run "
                                "the generator stage (with the same --output and --generator-steps) first")  # fmt: skip
    generator = build_regnet(options.generator_config, checkpoint=path)
    if generator.config.inputs != options.inputs:
        raise OptionError(f"{path} is fed {','.join(generator.config.inputs)}, not --generator-inputs "
                          f"{options.generator_inputs}: give the run's --generator-inputs")  # fmt: skip
    noise = torch.Generator().manual_seed(options.seed)
    mels = []
    with torch.no_grad():
        for features, _, _ in data.clips:
            z = torch.randn(1, generator.config.random_z_dim, generator=noise)
            mels.append(generator(torch.from_numpy(features)[None], z).clamp(0.0, 1.0)[0].numpy())
    return mels


def train_vocoder(options: TrainOptions, data: ClipData) -> Path:
    """Spectral losses for ``vocoder_steps`` (Adam, cosine decay), then ``vocoder_adversarial_steps`` from where
    they left the vocoder, with their own optimiser and schedule: against :class:`VocoderDiscriminator`, with
    feature matching, a heavy mel loss, the spectral convergence of the linear mel magnitudes and the
    hop-periodic loss, then ``vocoder_finetune_steps`` with the spectral losses again, their own optimiser and
    schedule; the last two on the clips' own mels or (a share of them) the generator's predictions of them (one
    resumable loop: every part's state is kept in the resume file, and a finished run given more steps of a
    later kind continues from where it ended)."""
    recipe = options.spectral_recipe
    model = ISTFTVocoder() if options.vocoder == "istft" else MelGANGenerator()
    spectral, adversarial = options.spectral_steps, options.vocoder_adversarial_steps
    finetune = options.vocoder_finetune_steps
    parts = {"vocoder": Part.cosine(model, options.vocoder_lr, spectral, betas=recipe.betas)}
    if adversarial:  # only then is there a discriminator to train and keep in the resume file
        discriminator = VocoderDiscriminator(REGNET.hop_length)
        betas = (0.8, 0.99)  # HiFi-GAN's, for both sides of the game
        parts["vocoder_adversarial"] = Part.cosine(model, options.vocoder_adversarial_lr, adversarial, betas=betas)
        parts["discriminator"] = Part.cosine(discriminator, options.discriminator_lr, adversarial, betas=betas)
    stft, mel = STFTLoss(), MelSpectrogram()
    if finetune:
        parts["vocoder_finetune"] = Part.cosine(model, options.vocoder_finetune_lr, finetune, betas=recipe.betas)
    predicted = predicted_mels(options, data) if (adversarial or finetune) and options.predicted_mels else None

    def step(rng, at: int) -> float:
        if at < spectral:
            m, audio = data.segments(rng, options.batch, options.vocoder_segment_frames)
        else:
            m, audio = data.segments(rng, options.batch, options.vocoder_segment_frames, predicted,
                                     options.predicted_mels)  # fmt: skip
        if isinstance(model, ISTFTVocoder):  # fresh noise each step (served: the model's fixed table)
            y = model(m, torch.randn(m.shape[0], model.config.noise_channels, m.shape[-1]))
        else:
            y = model(m)
        y = y[:, :, : audio.shape[1]]
        made, own = mel.magnitudes(y[:, 0]), mel.magnitudes(audio)
        mel_loss = (normalize_db(made) - normalize_db(own)).abs().mean()
        loss = stft(y[:, 0], audio)
        if at < spectral or at >= spectral + adversarial:  # the spectral steps, or the fine-tune ones after all
            loss = loss + recipe.mel_weight * mel_loss
            if recipe.periodic_weight:
                loss = loss + recipe.periodic_weight * hop_periodic_loss(y[:, 0], audio)
            parts["vocoder" if at < spectral else "vocoder_finetune"].update(loss)
            return loss.item()
        if options.linear_mel_weight:
            loss = loss + options.linear_mel_weight * torch.linalg.norm(made - own) / torch.linalg.norm(own)
        if options.periodic_weight:
            loss = loss + options.periodic_weight * hop_periodic_loss(y[:, 0], audio)
        real = audio[:, None]
        parts["discriminator"].update(discriminator_loss(discriminator(real), discriminator(y.detach())))
        with torch.no_grad():  # feature matching's targets: no gradient flows into the real sound's pass
            on_real = discriminator(real)
        on_fake = discriminator(y)
        loss = (loss + options.adversarial_mel_weight * mel_loss
                + options.adversarial_weight * generator_adversarial_loss(on_fake)
                + options.feature_matching_weight * feature_matching_loss(on_real, on_fake))  # fmt: skip
        parts["vocoder_adversarial"].update(loss)
        return loss.item()

    def save(folder: Path, _step: int) -> None:
        blob = istft_checkpoint(model) if isinstance(model, ISTFTVocoder) else melgan_checkpoint(model)
        torch.save(blob, folder / "best_netG.pt")

    torch.set_flush_denormal(True)  # subnormal activations late in training make every step several times slower
    history = _train_loop("vocoder", options, parts, spectral + adversarial + finetune, step, save)
    _save_history(options, "vocoder", history)
    return options.vocoder_checkpoint()


def _provenance(options: TrainOptions, fingerprints: dict[str, str], clips: int) -> dict:
    """What a generator checkpoint records of its training: the data (``clips``: how many it learnt from), the
    inputs' revision and the encoders it was fed."""
    if options.data is not None:
        data = {"dataset": portable_path(options.data), "clips": clips}
    else:
        data = {"clips": options.clips, "clip_seconds": options.clip_seconds, "first_seed": options.first_seed,
                "variety": options.variety, "flow_method": options.flow_method,
                "encoder_seed": options.encoder_seed}  # fmt: skip
    data["inputs_revision"] = INPUTS_REVISION  # a dataset of another revision is refused (dataset_paths)
    if options.generator_adversarial_weight:
        data["generator_adversarial_weight"] = options.generator_adversarial_weight
    # the encoders whose features the generator is fed: the export pairs it with exactly those
    encoders = {INPUT_ENCODERS[name] for name in options.inputs if name in INPUT_ENCODERS}
    fed = {name: fingerprint for name, fingerprint in fingerprints.items() if name in encoders}
    return {"s2s_encoders": fed, "s2s_training": data | {"torch": str(torch.__version__)}}


def _save_history(options: TrainOptions, name: str, history: list) -> None:
    path = options.output / "losses.json"
    losses = json.loads(path.read_text()) if path.exists() else {}
    losses[name] = history
    path.write_text(json.dumps(losses) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(losses), figsize=(5 * len(losses), 3.5), squeeze=False)
    for ax, (stage, points) in zip(axes[0], sorted(losses.items()), strict=True):
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values)
        ax.set_title(f"{stage} training loss")
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(options.output / "losses.png", dpi=100)
    plt.close(fig)


def install_demo_weights(generator: Path, vocoder: Path, destination: Path = WEIGHTS_DIR) -> tuple[Path, Path]:
    """Copy the trained weights into the package as float16 (half the size; loaded back as float32)."""
    destination.mkdir(parents=True, exist_ok=True)
    blob = torch_load(generator)
    blob["optimizer_netG"] = {k: v.half() if v.is_floating_point() else v for k, v in blob["optimizer_netG"].items()}
    torch.save(blob, destination / DEMO_GENERATOR.name)
    voc = torch_load(vocoder)
    voc["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in voc["state_dict"].items()}
    torch.save(voc, destination / DEMO_VOCODER.name)
    return destination / DEMO_GENERATOR.name, destination / DEMO_VOCODER.name


def train(options: TrainOptions, stages: tuple[str, ...] = STAGES, install_to: Path | None = None) -> dict:
    """Run ``stages`` (a subset of :data:`STAGES`, in their order); a stage left out uses what an earlier
    run of it left in ``options.output``. ``install_to`` (the package's weights folder for ``--install``):
    the final generator and vocoder are copied there as float16 demo weights.
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise OptionError(f"unknown stage(s) {unknown or 'none given'}; the stages are {', '.join(STAGES)}")
    if options.first_seed + options.clips > HELD_OUT_SEEDS.start:
        raise OptionError(f"training seeds must stay below {HELD_OUT_SEEDS.start} (held out for s2s eval)")
    started = time.monotonic()
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "options.json").write_text(json.dumps(asdict(options), default=str, indent=2) + "\n")
    result: dict = {"stages": [s for s in STAGES if s in stages]}
    needs_data = "generator" in stages or "vocoder" in stages
    if options.data is not None:
        paths = dataset_paths(options)
    elif "data" in stages:
        paths = prepare_data(options)
    else:
        paths = data_paths(options)
        missing = [p for p in paths if not p.exists() or lacking(p, options.inputs)] if needs_data else []
        if missing:
            raise MissingStageError(
                f"{len(missing)} of {len(paths)} training clips have no data (or none of --generator-inputs "
                f"{options.generator_inputs}) in {paths[0].parent} (e.g. {missing[0].name}): run the data stage "
                "first (--stages data,...)"
            )
    result["data"] = [str(p) for p in paths]
    if needs_data:
        record = options.output / "encoders.json"
        if options.data is not None:
            from s2s.training.dataset import encoder_fingerprints as dataset_encoders

            fingerprints = dataset_encoders(options.data)
        elif record.exists():
            fingerprints = json.loads(record.read_text())
        else:
            fingerprints = encoder_fingerprints(encoder_exports(options))
        data = ClipData(paths, options.inputs)
        if "generator" in stages:
            result["generator"] = str(train_generator(options, data, fingerprints))
        if "vocoder" in stages:
            result["vocoder"] = str(train_vocoder(options, data))
    if install_to is not None:
        finals = {"generator": options.generator_checkpoint(), "vocoder": options.vocoder_checkpoint()}
        absent = [f"{stage} ({path})" for stage, path in finals.items() if not path.is_file()]
        if absent:
            raise MissingStageError(
                f"--install needs the final checkpoints, and these are missing: {'; '.join(absent)}: "
                "run those stages (with the same --output and step counts) first"
            )
        gen, voc = install_demo_weights(finals["generator"], finals["vocoder"], install_to)
        result["installed"] = [str(gen), str(voc)]
    result["seconds"] = time.monotonic() - started
    (options.output / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
