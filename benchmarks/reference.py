"""The in-process reference: the same chain as the ``s2s`` ensemble, without Triton.

Same preprocess and postprocess code, windows batched the same way, and the networks either as the
PyTorch modules the export traced (same weights, same seeds: :meth:`ReferencePipeline.pytorch`) or as
the very ONNX files of a model repository run in this process exactly as the embedded backend serves
them, on the runtime and precision their configs name (:meth:`ReferencePipeline.served`), with that
repository's preprocess options. Tests compare the
served ensemble against the first; benchmarks time the second beside the ensemble to show what serving
through Triton costs and gains.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from s2s.repository import MANIFEST, MODEL_NAMES, REGNET_INPUTS, generator_inputs
from s2s.windowing import PreprocessOptions, Windows, generator_feed, postprocess, preprocess

#: a network as a function of numpy arrays
Network = Callable[..., np.ndarray]


@dataclass
class ReferencePipeline:
    networks: dict[str, Network]
    #: the served preprocess options (``z_dim``: the generator's)
    options: PreprocessOptions
    #: what the generator is fed (s2s.repository.GENERATOR_INPUTS' names, in order)
    inputs: tuple[str, ...] = REGNET_INPUTS

    @classmethod
    def pytorch(cls, options, preprocess: PreprocessOptions | None = None) -> ReferencePipeline:
        """The export's PyTorch modules for ``options`` (an ``ExportOptions``)."""
        import torch

        from s2s.export.specs import build_exports

        def wrap(module):
            def run(*arrays: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return module(*(torch.from_numpy(a) for a in arrays)).numpy()

            return run

        windows = preprocess or PreprocessOptions()
        exports = {e.name: e for e in build_exports(options, windows=windows)}
        networks = {name: wrap(e.module) for name, e in exports.items()}
        generator = exports["generator"].extra
        options = replace(windows, z_dim=generator["z_dim"])
        return cls(networks, options, tuple(generator["inputs"]))

    @classmethod
    def served(cls, repository: Path, preprocess: PreprocessOptions | None = None) -> ReferencePipeline:
        """The networks of an exported ``repository`` in this process, each as the embedded backend serves
        it (its config: ONNX Runtime, or the openvino accelerator in its precision), and the repository's
        preprocess options (``preprocess``: others, e.g. another flow method; the noise width stays the
        generator's)."""
        from s2s.export.triton_config import read_model_config, read_preprocess_options
        from s2s.runtime.ort_backend import ModelSpec, OrtModel

        manifest = json.loads((Path(repository) / MANIFEST).read_text())

        def wrap(name: str):
            spec = ModelSpec.from_config(read_model_config(Path(repository) / name / "config.pbtxt"))
            model = OrtModel(spec, Path(repository) / manifest["models"][name]["file"])
            names = [t.name for t in spec.inputs]

            def run(*arrays: np.ndarray) -> np.ndarray:
                return model.run(dict(zip(names, arrays, strict=True)))[0]

            return run

        z_dim = int(manifest["models"]["generator"]["z_dim"])
        preprocess = replace(preprocess or read_preprocess_options(repository), z_dim=z_dim)
        return cls({name: wrap(name) for name in MODEL_NAMES}, preprocess, generator_inputs(manifest))

    def preprocess(self, video: bytes) -> Windows:
        return preprocess(video, self.options)

    def run_networks(self, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
        """(waveforms (W, S), mels (W, 80, F)) for all windows at once."""
        n = self.networks
        fed = generator_feed(self.inputs, lambda name, frames: n[name](frames), rgb=windows.rgb, flow=windows.flow,
                             motion=windows.motion)  # fmt: skip
        mel = n["generator"](*fed, windows.frame_index, windows.z)
        return n["vocoder"](mel), mel

    def __call__(self, video: bytes) -> tuple[np.ndarray, np.ndarray]:
        windows = self.preprocess(video)
        waveforms, mels = self.run_networks(windows)
        return postprocess(waveforms, mels, windows.layout, windows.samples, windows.mel_frames)
