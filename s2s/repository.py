"""What a Triton model repository of s2s holds, and where it lies: the names every layer addresses.

<repository>/tsn_rgb, tsn_flow, generator, vocoder   the networks (`s2s export`: ONNX or TensorRT)
<repository>/preprocess, postprocess                 the Python-backend steps
<repository>/s2s                                     the ensemble that chains them
<repository>/s2s_features                            preprocess and the encoders only: features (s2s dataset)
<repository>/manifest.json                           where every artifact came from
"""

from __future__ import annotations

import os
from pathlib import Path

from s2s.constants import REGNET
from s2s.flags import flag
from s2s.motion import MOTION_WIDTH

#: The networks `s2s export` writes, in pipeline order.
MODEL_NAMES = ("tsn_rgb", "tsn_flow", "generator", "vocoder")
#: The Python-backend steps before and after the networks.
PREPROCESS, POSTPROCESS = "preprocess", "postprocess"
#: The ensemble: one request per video (or range of its windows), one response.
ENSEMBLE = "s2s"
#: The encoders' features of a video's windows, as the ensemble computes them (datasets for training).
FEATURES = "s2s_features"
#: Manifest file at the repository root recording the source of every artifact.
MANIFEST = "manifest.json"

#: What a generator can be fed (s2s.models.regnet.RegNetConfig.inputs, joined in that order along the feature
#: axis): each input's tensor name (the generator model's input, the ensemble's tensor) and width. RegNet's own:
#: the TSN features of the frames (tsn_rgb) and of their flow (tsn_flow); ``motion``: s2s.motion's statistics of
#: the flow (preprocess).
GENERATOR_INPUTS = {
    "rgb": ("rgb_features", REGNET.feature_dim),
    "flow": ("flow_features", REGNET.feature_dim),
    "motion": ("motion", MOTION_WIDTH),
}
#: each generator input's name by its tensor's name (the generator model's input, the ensembles' tensor and
#: ``s2s_features``' output)
INPUT_OF_TENSOR = {tensor: name for name, (tensor, _) in GENERATOR_INPUTS.items()}
#: RegNet's inputs, and what a generator whose checkpoint or manifest entry records none was fed
REGNET_INPUTS = ("rgb", "flow")
#: What the served preprocess computes as the generator's inputs, numbered when a change makes the inputs computed
#: before differ from those served now (a dataset of them no longer matches serving): 1, the flow between
#: consecutive 21.5 fps frames (a 15 fps picture shown twice gave a still frame, a skipped 30 or 60 fps picture a
#: jump in speed); 2, each frame's flow over one 1/21.5 s at any frame rate (s2s.video.Track). The preprocess
#: model's parameter ``inputs_revision`` (a configuration without it was exported before 2), and the revision
#: ``s2s dataset`` records.
INPUTS_REVISION = 2
#: the network that makes each generator input of the preprocess output of the same name (``motion`` has none:
#: preprocess makes it as it is fed)
INPUT_ENCODERS = {"rgb": "tsn_rgb", "flow": "tsn_flow"}


def generator_inputs(manifest: dict) -> tuple[str, ...]:
    """What the generator of a repository's ``manifest`` is fed (GENERATOR_INPUTS' names, in order)."""
    return tuple((manifest.get("models", {}).get("generator") or {}).get("inputs", REGNET_INPUTS))


def default_repository() -> Path:
    """$S2S_MODEL_REPOSITORY, or ``model_repository`` in the current directory."""
    return Path(os.environ.get("S2S_MODEL_REPOSITORY", "model_repository"))


def repository_field(help: str = "model repository folder"):
    """``--model-repository DIR`` as a field of an options record (s2s.flags), defaulting to
    :func:`default_repository` when the record is made."""
    return flag(
        name="--model-repository", help=help, default_factory=default_repository, type=Path,
        shown="$S2S_MODEL_REPOSITORY or model_repository",
    )  # fmt: skip


def add_repository_flag(parser, help: str = "model repository folder") -> None:
    """``--model-repository DIR``, defaulting to :func:`default_repository`."""
    parser.add_argument(
        "--model-repository", type=Path, default=default_repository(), metavar="DIR",
        help=f"{help} (default: $S2S_MODEL_REPOSITORY or model_repository)",
    )  # fmt: skip
