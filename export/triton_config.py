"""``config.pbtxt`` for each exported model, valid for the NGC image's native backends and for the
embedded server's Python-based onnxruntime backend alike; and reading one back (Triton's own
``ModelConfig`` protobuf, in the JSON form Triton hands to Python models)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from s2s.export.specs import ModelExport, TensorIO

from s2s.constants import REGNET
from s2s.errors import OptionError
from s2s.flags import flag
from s2s.motion import MOTION_WIDTH
from s2s.repository import (
    ENSEMBLE,
    FEATURES,
    GENERATOR_INPUTS,
    INPUT_ENCODERS,
    MANIFEST,
    MODEL_NAMES,
    POSTPROCESS,
    PREPROCESS,
    REGNET_INPUTS,
    generator_inputs,
)
from s2s.runtime.ort_backend import OPENVINO, PRECISIONS
from s2s.windowing import PreprocessOptions, window_count

#: ServingOptions.device -> the networks' instance kind
DEVICES = {"auto": "KIND_AUTO", "gpu": "KIND_GPU"}
FORMATS = ("onnx", "tensorrt")
CPU_ACCELERATORS = (OPENVINO, "none")


@dataclass(frozen=True)
class ServingOptions:
    """How the models are served (`s2s export --help` shows the flags)."""

    max_windows: int = flag(8, "--max-windows", "max_batch_size: most 10 s windows per execution")
    #: dynamic-batching delay: how long a window may wait for others to share its execution
    max_queue_delay_us: int = flag(2000, "--max-queue-delay-us", "dynamic batching delay in microseconds")
    #: instances per model (KIND_AUTO: on a GPU where there is one, else on the CPU)
    instances: int = flag(1, "--instances", "instances per model")
    #: bounds a network's memory by construction: the batcher may merge up to max_windows windows, the
    #: embedded backend runs them this many at a time (the NGC image's backend ignores the parameter)
    windows_per_run: int = flag(
        1, "--windows-per-run", "windows per ONNX run in the embedded backend, whatever the batcher merges (bounds "
        "each instance's activations); 0: all at once",
    )  # fmt: skip
    #: a full window warms up the shapes served
    warmup_frames: int = flag(
        REGNET.frames_per_window, "--warmup-frames", "frames of a warm-up request at model load, 0 for none"
    )
    cpu_accelerator: str = flag(
        OPENVINO, "--cpu-accelerator", "CPU execution accelerator of the onnxruntime models: openvino (the embedded "
        "backend runs them on the OpenVINO runtime, the NGC image's backend on ONNX Runtime's OpenVINO provider) or "
        "none (ONNX Runtime's CPU provider); not written with --device gpu", choices=CPU_ACCELERATORS,
    )  # fmt: skip
    cpu_precision: str = flag(
        "auto", "--cpu-precision", "precision of the openvino accelerator: auto (bf16 on a CPU with AMX or "
        "AVX512-BF16, else fp32, decided where the model loads), bf16 or fp32", choices=PRECISIONS,
    )  # fmt: skip
    trt_accelerator: bool = flag(
        False, "--trt-accelerator", "add the ONNX Runtime TensorRT FP16 execution accelerator to the onnxruntime "
        "configs (GPU)",
    )  # fmt: skip
    format: str = flag(
        "onnx", "--format", "onnx (backend onnxruntime) or tensorrt (FP16 plans, needs a GPU)", choices=FORMATS
    )
    #: where the TensorRT accelerator keeps its engines (a persistent volume: no rebuild on restart)
    trt_cache_path: str = ""
    device: str = flag(
        "auto", "--device", "auto: instances on a GPU where there is one, else CPU (loads anywhere); gpu: networks "
        "KIND_GPU and, with --flow-method tvl1, preprocess on the GPU (PyTorch TV-L1, outputs stay in GPU memory); "
        "needs a GPU and torch with CUDA in the server's Python", choices=tuple(DEVICES),
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise OptionError(f"unknown device {self.device!r} ({' or '.join(DEVICES)})")
        if self.format not in FORMATS:
            raise OptionError(f"unknown format {self.format!r} ({' or '.join(FORMATS)})")
        if self.cpu_accelerator not in CPU_ACCELERATORS or self.cpu_precision not in PRECISIONS:
            raise OptionError(f"unknown CPU accelerator or precision {self.cpu_accelerator!r}/{self.cpu_precision!r}")


def _dims(dims: tuple[int, ...]) -> str:
    return ", ".join(str(d) for d in dims)


def _tensor(t: TensorIO) -> str:
    return f'  {{ name: "{t.name}" data_type: {t.triton_type} dims: [ {_dims(t.dims)} ] }}'


def _warmup(export: ModelExport, frames: int) -> str:
    frames = export.length(frames)
    inputs = []
    for t in export.inputs:
        dims = tuple(frames if d == -1 else d for d in t.dims)
        inputs.append(
            f'    inputs {{ key: "{t.name}" value: {{ data_type: {t.triton_type} dims: [ {_dims(dims)} ] '
            f"{'random_data' if t.dtype.is_floating_point else 'zero_data'}: true }} }}"  # an index stays in range
        )
    body = "\n".join(inputs)
    return f'model_warmup [\n  {{\n    name: "window_of_{frames}"\n    batch_size: 1\n{body}\n  }}\n]\n'


def model_config(export: ModelExport, options: ServingOptions = ServingOptions()) -> str:
    """The config.pbtxt text for one exported model."""
    if options.format == "tensorrt":
        header = f'name: "{export.name}"\nplatform: "tensorrt_plan"\ndefault_model_filename: "model.plan"\n'
    else:
        header = f'name: "{export.name}"\nbackend: "onnxruntime"\ndefault_model_filename: "model.onnx"\n'

    text = (
        f"# {export.description}\n# Generated by `s2s export`; edit the export options, not this file.\n"
        + header
        + f"max_batch_size: {options.max_windows}\n"
        + "input [\n"
        + ",\n".join(_tensor(t) for t in export.inputs)
        + "\n]\noutput [\n"
        + ",\n".join(_tensor(t) for t in export.outputs)
        + "\n]\n"
        + f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n"
        + f"instance_group [ {{ count: {options.instances} kind: {DEVICES[options.device]} }} ]\n"
    )
    accelerators = []
    if options.trt_accelerator and options.format == "onnx":
        accelerators.append(
            "  gpu_execution_accelerator: [ {\n"
            '    name: "tensorrt"\n'
            '    parameters { key: "precision_mode" value: "FP16" }\n'
            '    parameters { key: "max_workspace_size_bytes" value: "4294967296" }\n'
            '    parameters { key: "trt_engine_cache_enable" value: "1" }\n'
            + (f'    parameters {{ key: "trt_engine_cache_path" value: "{options.trt_cache_path}" }}\n'
               if options.trt_cache_path else "")
            + "  } ]\n"
        )  # fmt: skip
    if options.cpu_accelerator == OPENVINO and options.format == "onnx" and options.device != "gpu":
        accelerators.append(
            f'  cpu_execution_accelerator: [ {{ name: "{OPENVINO}" '
            f'parameters {{ key: "precision" value: "{options.cpu_precision}" }} }} ]\n'
        )
    if accelerators:
        text += "optimization { execution_accelerators {\n" + "".join(accelerators) + "} }\n"
    if options.format == "onnx":
        parameters = {"s2s_windows_per_run": options.windows_per_run}
        if options.cpu_accelerator != OPENVINO:  # ONNX Runtime's CPU arena gives its peak back after each run
            parameters["memory.enable_memory_arena_shrinkage"] = "cpu:0"
        text += _parameters(parameters)
    if options.warmup_frames > 0:
        text += _warmup(export, options.warmup_frames)
    return text


#: Python-backend models of the pipeline and the classes implementing them.
PYTHON_MODELS = {PREPROCESS: "PreprocessModel", POSTPROCESS: "PostprocessModel"}

_SHIM = '''"""Triton Python model "{name}" (written by `s2s export`): the implementation is in the installed package."""

from s2s.runtime.python_models import {cls} as TritonPythonModel  # noqa: F401
'''


def python_model_source(name: str) -> str:
    return _SHIM.format(name=name, cls=PYTHON_MODELS[name])


def _parameters(values: dict) -> str:
    return "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in values.items())


#: The video (or still image), optionally a range of its windows (absent or 0 count: to the end of the
#: video) and, for a still image, how many seconds of sound (absent or 0: s2s.video.STILL_DURATION_S).
_WINDOW_INPUTS = (
    "input [\n"
    '  { name: "video" data_type: TYPE_UINT8 dims: [ -1 ] },\n'
    '  { name: "window_start" data_type: TYPE_INT32 dims: [ 1 ] optional: true },\n'
    '  { name: "window_count" data_type: TYPE_INT32 dims: [ 1 ] optional: true },\n'
    '  { name: "duration_s" data_type: TYPE_FP32 dims: [ 1 ] optional: true }\n]\n'
)


#: How postprocess lays the windows' outputs out (computed by preprocess, see s2s.windowing).
_LAYOUT = (
    '  { name: "layout" data_type: TYPE_INT32 dims: [ -1, 2, 4 ] },\n'
    '  { name: "samples" data_type: TYPE_INT32 dims: [ 1 ] },\n'
    '  { name: "mel_frames" data_type: TYPE_INT32 dims: [ 1 ] }\n]\n'
)


#: Where a request's waveform and mel start in the whole video's (sample, mel frame): window ranges of a
#: video overlap where their windows do, and join by adding them at their offsets (s2s.windowing.join_ranges).
_OFFSET = '  { name: "offset" data_type: TYPE_INT32 dims: [ 2 ] },\n'


def pipeline_configs(
    serving: ServingOptions, preprocess: PreprocessOptions, generator_inputs: tuple[str, ...] = REGNET_INPUTS
) -> dict[str, str]:
    """config.pbtxt of preprocess, postprocess, the ``s2s`` ensemble and ``s2s_features`` (``preprocess.z_dim``
    must be set). ``generator_inputs`` (s2s.repository.GENERATOR_INPUTS' names): what the generator is fed; the
    ``s2s`` ensemble runs only the encoders those need (``s2s_features`` always runs both)."""
    window_s = preprocess.window_frames / REGNET.fps
    frames = math.ceil(preprocess.limits.max_duration_s * REGNET.fps - 1e-6)
    windows = window_count(frames, preprocess.window_frames, preprocess.overlap_frames)
    if windows > serving.max_windows:
        raise OptionError(
            f"max duration {preprocess.limits.max_duration_s:g} s needs {windows} windows of {window_s:.2f} s "
            f"({preprocess.overlap_frames} frames shared), "
            f"more than max_windows={serving.max_windows}: raise --max-windows or lower --max-duration"
        )
    size, frames = REGNET.image_size, preprocess.window_frames
    # On a GPU profile with TV-L1, preprocess runs on the GPU (PyTorch TV-L1, outputs left in GPU memory
    # for the TSN encoders); otherwise on the CPU with OpenCV.
    on_gpu = serving.device == "gpu" and preprocess.flow_method == "tvl1"
    backend = {"FORCE_CPU_ONLY_INPUT_TENSORS": "no"} if on_gpu else {}
    preprocess_kind = "KIND_GPU" if on_gpu else "KIND_CPU"
    preprocess_config = (
        "# Decode (PyAV, in memory), resample to 21.5 fps, optical flow, cut into windows.\n"
        '# Generated by `s2s export`.\nname: "preprocess"\nbackend: "python"\nmax_batch_size: 0\n'
        + _WINDOW_INPUTS
        + "output [\n"  # each window's distinct frames (up to T of them), and which makes each of its T frames
        f'  {{ name: "rgb" data_type: TYPE_UINT8 dims: [ -1, -1, 3, {size}, {size} ] }},\n'
        f'  {{ name: "flow" data_type: TYPE_UINT8 dims: [ -1, -1, 2, {size}, {size} ] }},\n'
        f'  {{ name: "motion" data_type: TYPE_FP32 dims: [ -1, -1, {MOTION_WIDTH} ] }},\n'
        f'  {{ name: "frame_index" data_type: TYPE_INT32 dims: [ -1, {frames} ] }},\n'
        f'  {{ name: "z" data_type: TYPE_FP32 dims: [ -1, {preprocess.z_dim} ] }},\n'
        + _LAYOUT.replace("\n]\n", ",\n")
        + _OFFSET
        + '  { name: "windows" data_type: TYPE_INT32 dims: [ 1 ] }\n]\n'
        f"instance_group [ {{ count: {preprocess.instances} kind: {preprocess_kind} }} ]\n"
        + _parameters(preprocess.to_parameters() | backend)
    )
    postprocess = (
        "# Join window outputs: each window's audio resampled to its exact span, cross-faded where windows\n"
        "# overlap, trimmed to the video.\n"
        '# Generated by `s2s export`.\nname: "postprocess"\nbackend: "python"\nmax_batch_size: 0\n'
        "input [\n"
        '  { name: "waveform" data_type: TYPE_FP32 dims: [ -1, -1 ] },\n'
        f'  {{ name: "mel" data_type: TYPE_FP32 dims: [ -1, {REGNET.n_mels}, -1 ] }},\n' + _LAYOUT + "output [\n"
        '  { name: "waveform" data_type: TYPE_FP32 dims: [ -1 ] },\n'
        f'  {{ name: "mel" data_type: TYPE_FP32 dims: [ {REGNET.n_mels}, -1 ] }}\n]\n'
        "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
    )

    def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
        maps = "".join(f' input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items())
        maps += "".join(f' output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items())
        return f'    {{ model_name: "{model}" model_version: -1{maps} }}'

    video_in = {"video": "video", "window_start": "window_start", "window_count": "window_count",
                "duration_s": "duration_s"}  # fmt: skip
    # preprocess's output behind each generator input, as the ensemble names it: the frames its encoder sees
    # (s2s.repository.INPUT_ENCODERS), or the motion statistics as they are
    behind = {name: {name: f"{name}_frames" if name in INPUT_ENCODERS else name} for name in GENERATOR_INPUTS}
    index_out = {"frame_index": "frame_index", "windows": "windows"}
    layout_out = {"z": "noise", "layout": "layout", "samples": "samples", "mel_frames": "mel_frames",
                  "offset": "offset"}  # fmt: skip
    encoders = {
        name: step(network, {"frames": f"{name}_frames"}, {"features": GENERATOR_INPUTS[name][0]})
        for name, network in INPUT_ENCODERS.items()
    }
    fed = [GENERATOR_INPUTS[name][0] for name in generator_inputs]  # the ensemble's tensors are named alike
    steps = [
        step("preprocess", video_in, {k: v for name in generator_inputs for k, v in behind[name].items()}
             | index_out | layout_out),
        *(encoders[name] for name in generator_inputs if name in encoders),
        step("generator", {name: name for name in fed} | {"frame_index": "frame_index", "z": "noise"},
             {"mel": "window_mel"}),
        step("vocoder", {"mel": "window_mel"}, {"waveform": "window_waveform"}),
        step("postprocess", {"waveform": "window_waveform", "mel": "window_mel", "layout": "layout",
                             "samples": "samples", "mel_frames": "mel_frames"},
             {"waveform": "waveform", "mel": "mel"}),
    ]  # fmt: skip
    ensemble = (
        "# The whole chain: encoded video bytes in, waveform (22050 Hz, the video's duration) and mel out.\n"
        f'# Generated by `s2s export`.\nname: "{ENSEMBLE}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
        + _WINDOW_INPUTS
        + "output [\n"
        '  { name: "waveform" data_type: TYPE_FP32 dims: [ -1 ] },\n'
        f'  {{ name: "mel" data_type: TYPE_FP32 dims: [ {REGNET.n_mels}, -1 ] }},\n'
        + _OFFSET
        + '  { name: "windows" data_type: TYPE_INT32 dims: [ 1 ] }\n]\n'
        "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}\n"
    )
    features = (
        "# The encoders' features of a video's windows (each window's distinct frames; frame_index loops them),\n"
        "# and the motion statistics of their flow, exactly as the s2s ensemble computes them: what `s2s dataset`\n"
        "# trains on.\n"
        f'# Generated by `s2s export`.\nname: "{FEATURES}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
        + _WINDOW_INPUTS
        + "output [\n"
        f'  {{ name: "rgb_features" data_type: TYPE_FP32 dims: [ -1, -1, {REGNET.feature_dim} ] }},\n'
        f'  {{ name: "flow_features" data_type: TYPE_FP32 dims: [ -1, -1, {REGNET.feature_dim} ] }},\n'
        f'  {{ name: "motion" data_type: TYPE_FP32 dims: [ -1, -1, {MOTION_WIDTH} ] }},\n'
        f'  {{ name: "frame_index" data_type: TYPE_INT32 dims: [ -1, {frames} ] }},\n'
        '  { name: "windows" data_type: TYPE_INT32 dims: [ 1 ] }\n]\n'
        "ensemble_scheduling {\n  step [\n"
        + ",\n".join(
            [
                step("preprocess", video_in, behind["rgb"] | behind["flow"] | index_out | behind["motion"]),
                *encoders.values(),
            ]
        )
        + "\n  ]\n}\n"
    )
    return {PREPROCESS: preprocess_config, POSTPROCESS: postprocess, ENSEMBLE: ensemble, FEATURES: features}


def write_pipeline(
    repository: Path, serving: ServingOptions, preprocess: PreprocessOptions,
    generator_inputs: tuple[str, ...] = REGNET_INPUTS,
) -> None:  # fmt: skip
    """Write preprocess, postprocess (configs + model.py) and the ensembles into ``repository``
    (:func:`pipeline_configs`)."""
    for name, text in pipeline_configs(serving, preprocess, generator_inputs).items():
        (repository / name / "1").mkdir(parents=True, exist_ok=True)  # ensembles need a version folder too
        (repository / name / "config.pbtxt").write_text(text)
        if name in PYTHON_MODELS:
            (repository / name / "1" / "model.py").write_text(python_model_source(name))


# ------------------------------------------------------------------------------------- reading back
def parse_model_config(text: str) -> Any:
    """config.pbtxt text -> Triton's ``ModelConfig`` message (the protobuf the server itself parses)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise OptionError(f"not a Triton model configuration: {exc}") from None


def read_model_config(path: Path) -> dict:
    """A config.pbtxt in Triton's JSON form, as the server hands it to a Python model."""
    return model_config_dict(Path(path).read_text())


def model_config_dict(text: str) -> dict:
    """config.pbtxt text in Triton's JSON form."""
    from google.protobuf import json_format

    return json_format.MessageToDict(parse_model_config(text), preserving_proto_field_name=True)


def with_instances(text: str, count: int) -> str:
    """The same model configuration with ``count`` instances in each of its instance groups."""
    from google.protobuf import text_format

    message = parse_model_config(text)
    for group in message.instance_group:
        group.count = count
    return text_format.MessageToString(message)


def read_preprocess_options(repository: Path) -> PreprocessOptions:
    """The preprocess options an exported ``repository`` serves (from its preprocess config)."""
    return PreprocessOptions.from_model_config(read_model_config(Path(repository) / PREPROCESS / "config.pbtxt"))


def check_noise_period(manifest: dict, preprocess: PreprocessOptions, repository: Path) -> None:
    """Refuse to serve windows whose stride is not the one the repository's vocoder reads its noise by (it was
    exported for other windows and would step at every seam again); called before anything is written."""
    period = manifest["models"].get("vocoder", {}).get("noise_period")
    if period is not None and int(period) != preprocess.stride_mel_frames:
        raise OptionError(
            f"the vocoder in {repository} reads its noise from the start again every {period} mel frames, the window "
            f"stride it was exported with; these windows start every {preprocess.stride_mel_frames}: export the "
            "vocoder with them too"
        )


def relink_repository(
    source: Path, target: Path, preprocess: PreprocessOptions, instances: int | None = None
) -> ServingOptions:
    """Fill ``target`` with the networks exported in ``source`` (their version folders linked, not copied)
    served with ``preprocess`` and, if given, ``instances`` per network; the rest as exported. For
    benchmarks that compare serving settings without exporting again. Returns the serving options."""
    import json

    source = Path(source).resolve()
    manifest = json.loads((source / MANIFEST).read_text())
    check_noise_period(manifest, preprocess, source)
    recorded = manifest.get("serving", {})
    serving = ServingOptions(**{k: v for k, v in recorded.items() if k in ServingOptions.__dataclass_fields__})
    for name in MODEL_NAMES:
        (target / name).mkdir(parents=True)
        (target / name / "1").symlink_to(source / name / "1", target_is_directory=True)
        config = (source / name / "config.pbtxt").read_text()
        (target / name / "config.pbtxt").write_text(config if instances is None else with_instances(config, instances))
    write_pipeline(target, serving, preprocess, generator_inputs(manifest))
    return serving
