"""What the model repository holds: one :class:`ModelExport` per network, built from the core models.

Tensor names, dtypes and dims are defined here once; the ONNX export, the Triton configs, the
TensorRT profiles and the tests all read them from these specs.

    tsn_rgb    frames uint8 [W, T, 3, 224, 224] (BGR 0..255)      -> features fp32 [W, T, 1024]
    tsn_flow   frames uint8 [W, T, 2, 224, 224] (flow, 0..255)    -> features fp32 [W, T, 1024]
    generator  its inputs (RegNet's: rgb_features, flow_features fp32 [W, n, 1024]; or motion fp32 [W, n, 60]
               and flow_features), frame_index int32 [W, T], z fp32 [W, z_dim]  -> mel fp32 [W, 80, 4T] in [0, 1]
    vocoder    mel fp32 [W, 80, F]                                 -> waveform fp32 [W, 256 F]

W (windows of one or several videos) is Triton's batch dimension; T and F are variable. The encoders
see each distinct frame of a window once (n <= T: fewer for a short last window, 1 for a still);
the generator loops their features back to the window's T frames by ``frame_index``. What a generator is fed
(s2s.repository.GENERATOR_INPUTS) its checkpoint records; the manifest keeps it (``inputs``), and the
``s2s`` ensemble runs the steps that make those inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from s2s.constants import REGNET
from s2s.errors import OptionError
from s2s.flags import flag
from s2s.models.bninception import TSNEncoder, build_bninception
from s2s.models.checkpoints import (
    CheckpointError,
    checkpoint_record,
    count_parameters,
    file_sha256,
    recorded_architecture,
    state_fingerprint,
)
from s2s.models.hifigan import build_hifigan
from s2s.models.istft import ISTFTVocoder, build_istft_vocoder
from s2s.models.melgan import build_melgan
from s2s.models.regnet import CONFIGS, GeneratorExport, build_regnet, config_name, load_regnet_checkpoint, parse_inputs
from s2s.repository import GENERATOR_INPUTS, MODEL_NAMES
from s2s.weights import DEMO_GENERATOR, DEMO_VOCODER
from s2s.windowing import PreprocessOptions

log = logging.getLogger(__name__)

#: Vocoder networks the export can build (``istft``: s2s.models.istft, trained by ``s2s train --vocoder istft``).
VOCODERS = ("melgan", "istft", "hifigan-v1", "hifigan-v2", "hifigan-v3")


@dataclass(frozen=True)
class TensorIO:
    """One tensor of a model; ``dims`` exclude the batch (windows) dimension, -1 is variable."""

    name: str
    dtype: torch.dtype
    dims: tuple[int, ...]
    #: names of the variable axes, in order, for ONNX dynamic axes (batch first)
    axes: tuple[str, ...] = ()
    #: float values lie in [0, 1] (a mel), not around 0: examples and warm-up data are drawn so
    unit_interval: bool = False

    @property
    def triton_type(self) -> str:
        return {torch.uint8: "TYPE_UINT8", torch.int32: "TYPE_INT32", torch.float32: "TYPE_FP32",
                torch.float16: "TYPE_FP16"}[self.dtype]  # fmt: skip

    def dynamic_axes(self) -> dict[int, str]:
        variable = [0] + [i + 1 for i, d in enumerate(self.dims) if d == -1]
        return dict(zip(variable, ("windows", *self.axes), strict=True))

    def example(self, windows: int, variable: int, generator: torch.Generator) -> torch.Tensor:
        shape = (windows, *(variable if d == -1 else d for d in self.dims))
        if self.dtype == torch.uint8:
            return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        if self.dtype == torch.int32:  # an index into the ``variable`` rows of another input
            return torch.randint(0, variable, shape, dtype=torch.int32, generator=generator)
        if self.unit_interval:
            return torch.rand(shape, generator=generator)
        return torch.randn(shape, generator=generator)


@dataclass
class ModelExport:
    name: str
    module: nn.Module
    inputs: list[TensorIO]
    outputs: list[TensorIO]
    #: where the weights came from: {"checkpoint": path, "sha256": ...} or {"seed": n}
    source: dict
    description: str
    #: length of the variable (time) axis per video frame: 1 for the encoders and the generator's
    #: input, the generator's upsampling (4 mel frames per video frame) for the vocoder
    time_scale: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def warning(self) -> str | None:
        if "seed" in self.source and not {"trained_generator", "not_fed_to_generator"} & set(self.source):
            return (
                f"weights are seeded random (seed {self.source['seed']}), not trained: "
                "the output is noise, not sound that follows the picture"
            )
        return None

    def length(self, frames: int) -> int:
        """The variable axis of this model's inputs for ``frames`` video frames."""
        return self.time_scale * frames

    def examples(self, windows: int = 1, frames: int = REGNET.frames_per_window, seed: int = 0) -> tuple:
        """Random inputs for ``windows`` windows of ``frames`` video frames each."""
        g = torch.Generator().manual_seed(seed)
        return tuple(t.example(windows, self.length(frames), g) for t in self.inputs)

    @property
    def parameters(self) -> int:
        return count_parameters(self.module)


def _source(checkpoint: str | Path | None, seed: int) -> dict:
    return {"seed": seed} if checkpoint is None else checkpoint_record(checkpoint)


@dataclass
class ExportOptions:
    """Where each network's weights come from (None: seeded random)."""

    rgb_checkpoint: Path | None = flag(
        None, "--rgb-checkpoint", "ImageNet BN-Inception state dict for the RGB encoder", type=Path
    )
    flow_checkpoint: Path | None = flag(None, "--flow-checkpoint", "BN-Inception state dict for the flow encoder",
                                        type=Path)  # fmt: skip
    generator_checkpoint: Path | None = flag(None, "--generator-checkpoint", "RegNet checkpoint_XXXXXX_netG", type=Path)
    generator_config: str = flag("reference", "--generator-config", "RegNet configuration", choices=tuple(CONFIGS))
    generator_inputs: str | None = flag(
        None, "--generator-inputs", "what a seeded generator is fed, in order (a checkpoint records its own): "
        "rgb, flow (TSN features), motion (s2s.motion's statistics of the flow), e.g. motion,flow",
        type=str, shown="the checkpoint's, else rgb,flow",
    )  # fmt: skip
    vocoder: str | None = flag(None, "--vocoder", "vocoder network", choices=VOCODERS,
                               shown="what the checkpoint records, else melgan")  # fmt: skip
    vocoder_checkpoint: Path | None = flag(
        None, "--vocoder-checkpoint", "MelGAN best_netG.pt, HiFi-GAN g_XXXXXXXX or an s2s train vocoder", type=Path
    )
    seed: int = flag(0, "--seed", "seed of random weights where no checkpoint is given")

    def __post_init__(self) -> None:
        if self.vocoder is not None and self.vocoder not in VOCODERS:
            raise OptionError(f"unknown vocoder {self.vocoder!r}; known: {', '.join(VOCODERS)}")
        if self.generator_inputs is not None:
            parse_inputs(self.generator_inputs)

    def vocoder_name(self) -> str:
        """The vocoder network: ``--vocoder``, else what the checkpoint records (s2s train's files), else
        melgan (the official MelGAN and HiFi-GAN files record none); a named one the checkpoint contradicts is
        refused."""
        recorded = recorded_architecture(self.vocoder_checkpoint) if self.vocoder_checkpoint else None
        if self.vocoder and recorded and self.vocoder != recorded:
            raise OptionError(f"--vocoder {self.vocoder}, but {self.vocoder_checkpoint} holds the {recorded} vocoder: "
                              f"give --vocoder {recorded} or leave it out")  # fmt: skip
        return self.vocoder or recorded or "melgan"

    def with_demo_weights(self) -> ExportOptions:
        """The package's demo generator and vocoder (``s2s train --install``) where no checkpoint is given.

        They were trained on the seeded encoders of ``seed`` 0 (the export checks the pairing). Without
        demo weights in the package this is a no-op, and the export warns that the output is noise.
        """
        options = self
        if options.generator_checkpoint is None and DEMO_GENERATOR.exists():
            options = replace(options, generator_checkpoint=DEMO_GENERATOR)
        if (options.vocoder_checkpoint is None and DEMO_VOCODER.exists()
                and options.vocoder in (None, recorded_architecture(DEMO_VOCODER) or "melgan")):  # fmt: skip
            options = replace(options, vocoder_checkpoint=DEMO_VOCODER)
        return options


def build_exports(
    options: ExportOptions,
    names: tuple[str, ...] = MODEL_NAMES,
    warn_noise: bool = True,
    windows: PreprocessOptions | None = None,
) -> list[ModelExport]:
    """Instantiate the requested networks (with their export wrappers) and describe their tensors.

    ``warn_noise=False``: seeded weights are what the caller wants (``s2s train`` learns on the seeded
    encoders' features), so do not log that they make noise. ``windows``: the preprocess options the networks
    will serve (default ones if None); a vocoder that reads noise reads it again every window stride.
    """
    unknown = set(names) - set(MODEL_NAMES)
    if unknown:
        raise OptionError(f"unknown model(s) {sorted(unknown)}; known: {', '.join(MODEL_NAMES)}")
    exports = []
    r = REGNET
    size = r.image_size
    trained_on = _generator_encoders(options)  # encoder fingerprints the generator was trained with
    if "tsn_rgb" in names:
        exports.append(
            ModelExport(
                "tsn_rgb",
                TSNEncoder(build_bninception(3, options.rgb_checkpoint, seed=options.seed)).eval(),
                [TensorIO("frames", torch.uint8, (-1, 3, size, size), ("frames",))],
                [TensorIO("features", torch.float32, (-1, r.feature_dim), ("frames",))],
                _source(options.rgb_checkpoint, options.seed),
                "TSN BN-Inception RGB encoder: uint8 BGR frames -> 1024-d global-pool features",
            )
        )
    if "tsn_flow" in names:
        exports.append(
            ModelExport(
                "tsn_flow",
                TSNEncoder(build_bninception(2, options.flow_checkpoint, seed=options.seed + 1)).eval(),
                [TensorIO("frames", torch.uint8, (-1, 2, size, size), ("frames",))],
                [TensorIO("features", torch.float32, (-1, r.feature_dim), ("frames",))],
                _source(options.flow_checkpoint, options.seed + 1),
                "TSN BN-Inception flow encoder: uint8 x/y flow pairs -> 1024-d global-pool features",
            )
        )
    if trained_on:
        _check_pairing(options, trained_on, exports)
    if "generator" in names:
        inputs = parse_inputs(options.generator_inputs) if options.generator_inputs else None
        generator = build_regnet(
            options.generator_config, options.generator_checkpoint, seed=options.seed + 2, inputs=inputs
        )
        z_dim, fed = generator.config.random_z_dim, generator.config.inputs
        named = config_name(generator.config)
        exports.append(
            ModelExport(
                "generator",
                GeneratorExport(generator).eval(),
                [
                    *(
                        TensorIO(GENERATOR_INPUTS[name][0], torch.float32, (-1, GENERATOR_INPUTS[name][1]), ("frames",))
                        for name in fed
                    ),
                    TensorIO("frame_index", torch.int32, (-1,), ("window_frames",)),
                    TensorIO("z", torch.float32, (z_dim,)),
                ],
                [TensorIO("mel", torch.float32, (r.n_mels, -1), ("mel_frames",), unit_interval=True)],
                _source(options.generator_checkpoint, options.seed + 2),
                f"RegNet generator ({named}, fed {' + '.join(fed)}): its inputs looped by frame_index + noise z -> "
                "mel in [0, 1]",
                extra={"config": named, "z_dim": z_dim, "inputs": list(fed)},
            )
        )
    if "vocoder" in names:
        vocoder = options.vocoder_name()
        module = build_vocoder(vocoder, options.vocoder_checkpoint, options.seed + 3)
        period = {}
        if isinstance(module, ISTFTVocoder):  # it reads noise: each window reads the noise of its frames
            module.noise_period = (windows or PreprocessOptions()).stride_mel_frames
            period = {"noise_period": module.noise_period}
        exports.append(
            ModelExport(
                "vocoder",
                VocoderExport(module).eval(),
                [TensorIO("mel", torch.float32, (r.n_mels, -1), ("mel_frames",), unit_interval=True)],
                [TensorIO("waveform", torch.float32, (-1,), ("samples",))],
                _source(options.vocoder_checkpoint, options.seed + 3),
                f"{vocoder} vocoder: mel -> {r.sample_rate} Hz waveform, {r.hop_length} samples per frame",
                time_scale=r.mel_frames_per_frame,
                extra={"vocoder": vocoder, **period},
            )
        )
    for export in exports:
        if export.warning and warn_noise:
            log.warning("%s: %s", export.name, export.warning)
    return exports


def _generator_encoders(options: ExportOptions) -> dict[str, str]:
    """The encoder fingerprints a generator checkpoint records (s2s.training.train writes them; others have none)."""
    if options.generator_checkpoint is None:
        return {}
    _, meta = load_regnet_checkpoint(options.generator_checkpoint)
    return dict(meta.get("s2s_encoders") or {})


def _check_pairing(options: ExportOptions, trained_on: dict[str, str], exports: list[ModelExport]) -> None:
    """Refuse a generator trained on other encoder weights than the ones exported; mark a good pairing."""
    built = {e.name: e for e in exports}
    channels = {"tsn_rgb": 3, "tsn_flow": 2}
    checkpoints = {"tsn_rgb": options.rgb_checkpoint, "tsn_flow": options.flow_checkpoint}
    seeds = {"tsn_rgb": options.seed, "tsn_flow": options.seed + 1}
    for name, expected in sorted(trained_on.items()):
        if name in built:
            module = built[name].module
        else:
            module = TSNEncoder(build_bninception(channels[name], checkpoints[name], seed=seeds[name]))
        actual = state_fingerprint(module)
        if actual != expected:
            raise CheckpointError(
                f"generator {options.generator_checkpoint} was trained on other {name} weights than this export "
                f"builds (fingerprint {expected[:12]}, here {actual[:12]}): export it with the encoders it was "
                "trained with (see its s2s_training record: --seed, no encoder checkpoint), or train a generator "
                "on these encoders"
            )
        if name in built and "seed" in built[name].source:
            built[name].source["trained_generator"] = file_sha256(options.generator_checkpoint)
    for name, export in built.items():  # an encoder the generator is not fed: its features serve s2s_features only
        if name not in trained_on and name.startswith("tsn_") and "seed" in export.source:
            export.source["not_fed_to_generator"] = file_sha256(options.generator_checkpoint)
    log.info("generator %s is paired with the encoders it was trained on", options.generator_checkpoint)


def build_vocoder(name: str, checkpoint: str | Path | None, seed: int) -> nn.Module:
    if name == "melgan":
        return build_melgan(checkpoint=checkpoint, seed=seed)
    if name == "istft":
        return build_istft_vocoder(checkpoint=checkpoint, seed=seed)
    if name.startswith("hifigan-"):
        return build_hifigan(name.removeprefix("hifigan-"), checkpoint, seed=seed)
    raise OptionError(f"unknown vocoder {name!r}; known: {', '.join(VOCODERS)}")


class VocoderExport(nn.Module):
    """Export wrapper: mel (B, 80, F) -> waveform (B, F * 256) (channel axis dropped)."""

    def __init__(self, vocoder: nn.Module) -> None:
        super().__init__()
        self.vocoder = vocoder

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocoder(mel).squeeze(1)
