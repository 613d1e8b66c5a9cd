"""The in-process reference: the same chain as the ``s2s`` ensemble, without Triton.

Same preprocess and postprocess code, windows batched the same way, and the networks either as the
PyTorch modules the export traced (same weights, same seeds: :meth:`ReferencePipeline.pytorch`) or as
the very ONNX files of a model repository run by ONNX Runtime in this process
(:meth:`ReferencePipeline.onnxruntime`). Tests compare the served ensemble against the first;
benchmarks time the second beside the ensemble to show what serving through Triton costs and gains.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from s2s.constants import REGNET
from s2s.export.layout import MANIFEST, MODEL_NAMES
from s2s.pipeline import Windows, postprocess, preprocess
from s2s.video import VideoLimits

#: a network as a function of numpy arrays
Network = Callable[..., np.ndarray]


@dataclass
class ReferencePipeline:
    networks: dict[str, Network]
    z_dim: int
    window_frames: int = REGNET.frames_per_window
    flow_method: str = "dis"
    noise_seed: int = 0
    limits: VideoLimits = field(default_factory=VideoLimits)

    @classmethod
    def pytorch(cls, options, **kwargs) -> ReferencePipeline:
        """The export's PyTorch modules for ``options`` (an ``ExportOptions``)."""
        import torch

        from s2s.export.specs import build_exports

        def wrap(module):
            def run(*arrays: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return module(*(torch.from_numpy(a) for a in arrays)).numpy()

            return run

        exports = {e.name: e for e in build_exports(options)}
        z_dim = exports["generator"].extra["z_dim"]
        return cls({name: wrap(e.module) for name, e in exports.items()}, z_dim, **kwargs)

    @classmethod
    def onnxruntime(cls, repository: Path, threads: int = 0, **kwargs) -> ReferencePipeline:
        """The ONNX files of an exported ``repository``, in ONNX Runtime sessions in this process."""
        import onnxruntime as ort

        manifest = json.loads((Path(repository) / MANIFEST).read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads

        def wrap(name: str):
            session = ort.InferenceSession(
                str(Path(repository) / manifest["models"][name]["file"]), options, providers=["CPUExecutionProvider"]
            )
            names = [i.name for i in session.get_inputs()]

            def run(*arrays: np.ndarray) -> np.ndarray:
                return session.run(None, dict(zip(names, arrays, strict=True)))[0]

            return run

        z_dim = int(manifest["models"]["generator"]["z_dim"])
        return cls({name: wrap(name) for name in MODEL_NAMES}, z_dim, **kwargs)

    def preprocess(self, video: bytes) -> Windows:
        return preprocess(
            video, window_frames=self.window_frames, flow_method=self.flow_method, z_dim=self.z_dim,
            seed=self.noise_seed, limits=self.limits,
        )  # fmt: skip

    def run_networks(self, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
        """(waveforms (W, S), mels (W, 80, F)) for all windows at once."""
        n = self.networks
        rgb = n["tsn_rgb"](windows.rgb)
        flow = n["tsn_flow"](windows.flow)
        mel = n["generator"](rgb, flow, windows.z)
        return n["vocoder"](mel), mel

    def __call__(self, video: bytes) -> tuple[np.ndarray, np.ndarray]:
        windows = self.preprocess(video)
        waveforms, mels = self.run_networks(windows)
        return postprocess(waveforms, mels, windows.spans, windows.samples, windows.mel_frames)
