"""A Python-based Triton backend named "onnxruntime" that runs ``model.onnx`` with the onnxruntime package.

The embedded server (the nvidia-pytriton wheel) has no native onnxruntime backend. This backend serves
the same ``config.pbtxt`` files the native backend of the NGC image serves, and honours what our models
use of it:

- ``default_model_filename`` (default ``model.onnx``; a directory holding ``model.onnx`` also works),
- input/output names and data types from the config, checked against the ONNX graph at load time,
- ``max_batch_size`` with dynamic batching: requests of one ``execute`` call that share their
  non-batch shapes are concatenated into one ONNX Runtime run and split back,
- instance counts (Triton starts one stub process per instance),
- the native backend's session parameters (``intra_op_thread_count``, ``inter_op_thread_count``,
  ``execution_mode``, ``enable_mem_arena``, ``enable_mem_pattern``) and ``optimization.graph.level``,
- the CPU execution accelerator ``openvino`` (what the native backend calls ONNX Runtime's OpenVINO
  execution provider): the model runs on the OpenVINO runtime (the ``openvino`` package) instead, with
  its ``precision`` parameter (``fp32``, ``bf16``, or ``auto``: bf16 where the CPU computes it natively,
  AMX or AVX512-BF16, else fp32) and ``intra_op_thread_count`` as its thread count. Without the package
  it is logged and the CPU execution provider serves.

GPU-only settings (TensorRT/CUDA execution accelerators) are logged and ignored when no CUDA execution
provider is available. Anything else it cannot honour (sequence batching, ragged batching, reshape,
shape tensors, optional inputs, string tensors, ...) fails the model load with an error naming it.

The pure-Python part (:class:`OrtModel`) does not need Triton, so it can be tested on its own;
:class:`TritonPythonModel` is the thin adapter the Python backend stub instantiates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:  # only importable inside a Triton Python-backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - exercised outside the server
    pb_utils = None

log = logging.getLogger(__name__)

#: Triton data type -> numpy dtype for the types this backend can carry.
TRITON_TO_NUMPY: dict[str, np.dtype] = {
    "TYPE_BOOL": np.dtype(np.bool_),
    "TYPE_UINT8": np.dtype(np.uint8),
    "TYPE_UINT16": np.dtype(np.uint16),
    "TYPE_UINT32": np.dtype(np.uint32),
    "TYPE_UINT64": np.dtype(np.uint64),
    "TYPE_INT8": np.dtype(np.int8),
    "TYPE_INT16": np.dtype(np.int16),
    "TYPE_INT32": np.dtype(np.int32),
    "TYPE_INT64": np.dtype(np.int64),
    "TYPE_FP16": np.dtype(np.float16),
    "TYPE_FP32": np.dtype(np.float32),
    "TYPE_FP64": np.dtype(np.float64),
}

#: ONNX Runtime type strings -> numpy dtype.
ORT_TO_NUMPY: dict[str, np.dtype] = {
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
}

#: Parameters we honour (the native backend's session parameters, and s2s's own bound on a run), with their
#: converters.
SESSION_PARAMETERS: dict[str, Callable[[str], Any]] = {
    "s2s_windows_per_run": int,
    "intra_op_thread_count": int,
    "inter_op_thread_count": int,
    "execution_mode": int,
    "enable_mem_arena": lambda v: v.strip().lower() in ("1", "true", "yes", "on"),
    "enable_mem_pattern": lambda v: v.strip().lower() in ("1", "true", "yes", "on"),
    "memory.enable_memory_arena_shrinkage": str,
}

#: ONNX model metadata key whose value the backend logs as a warning at load (e.g. "weights are random").
WARNING_METADATA_KEY = "s2s_warning"

#: the CPU execution accelerator served by the OpenVINO runtime, and its precisions
OPENVINO = "openvino"
PRECISIONS = ("auto", "bf16", "fp32")
_OV_PRECISION = {"bf16": "bf16", "fp32": "f32"}


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX tiles or AVX512-BF16), read from /proc/cpuinfo."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def cpu_path(accelerator: str | None, precision: str = "auto") -> str:
    """How the embedded backend runs a model whose config names CPU ``accelerator`` (None or "none": no
    accelerator) with ``precision``, on this machine's CPU, in words."""
    if accelerator in (None, "none"):
        return "ONNX Runtime fp32 (no CPU accelerator in the configs)"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "ONNX Runtime fp32 (the configs ask for openvino, which is not installed)"
    resolved = resolve_precision(precision)
    why = {
        ("auto", "bf16"): "this CPU computes bf16: AMX / AVX512-BF16",
        ("auto", "fp32"): "this CPU has no bf16 units",
    }.get((precision, resolved), f"precision {precision} in the configs")
    return f"OpenVINO {resolved} ({why})"


def resolve_precision(precision: str) -> str:
    """``auto`` -> bf16 on a CPU with native bf16, else fp32; anything else as given (validated)."""
    if precision not in PRECISIONS:
        raise UnsupportedConfigError(f"openvino precision {precision!r} (one of {', '.join(PRECISIONS)})")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


class UnsupportedConfigError(ValueError):
    """The model configuration asks for something this backend cannot honour."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model configuration (dims exclude the batch dimension)."""

    name: str
    dtype: np.dtype
    dims: tuple[int, ...]


@dataclass
class ModelSpec:
    """What the backend needs from a Triton model configuration (the JSON the stub receives)."""

    name: str
    max_batch_size: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    filename: str = "model.onnx"
    parameters: dict[str, str] = field(default_factory=dict)
    graph_level: int | None = None
    gpu_accelerators: list[dict[str, Any]] = field(default_factory=list)
    cpu_accelerators: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelSpec:
        """Parse and validate a model configuration; raise :class:`UnsupportedConfigError` naming the field."""
        name = config.get("name", "?")
        problems: list[str] = []
        platform = config.get("platform") or ""
        if platform not in ("", "onnxruntime_onnx"):
            problems.append(f"platform {platform!r} (only onnxruntime_onnx)")
        for key in ("sequence_batching", "ensemble_scheduling", "batch_input", "batch_output"):
            if config.get(key):
                problems.append(key)
        if (config.get("model_transaction_policy") or {}).get("decoupled"):
            problems.append("model_transaction_policy.decoupled")

        def tensors(kind: str) -> list[TensorSpec]:
            specs = []
            for entry in config.get(kind) or []:
                tname = entry.get("name", "?")
                for key in ("reshape", "is_shape_tensor", "allow_ragged_batch", "optional", "label_filename"):
                    if entry.get(key):
                        problems.append(f"{kind} {tname!r}: {key}")
                dtype_name = entry.get("data_type", "TYPE_INVALID")
                if dtype_name not in TRITON_TO_NUMPY:
                    problems.append(f"{kind} {tname!r}: data_type {dtype_name}")
                    continue
                dims = tuple(int(d) for d in entry.get("dims") or [])
                specs.append(TensorSpec(tname, TRITON_TO_NUMPY[dtype_name], dims))
            return specs

        inputs, outputs = tensors("input"), tensors("output")
        if not inputs:
            problems.append("no inputs in the config (this backend does not auto-complete configs)")
        if not outputs:
            problems.append("no outputs in the config (this backend does not auto-complete configs)")

        optimization = config.get("optimization") or {}
        accelerators = optimization.get("execution_accelerators") or {}
        graph = optimization.get("graph") or {}
        parameters = {
            key: (value or {}).get("string_value", "") for key, value in (config.get("parameters") or {}).items()
        }
        for key, value in parameters.items():
            if key in SESSION_PARAMETERS:
                try:
                    SESSION_PARAMETERS[key](value)
                except ValueError:
                    problems.append(f"parameter {key}={value!r} is not a valid value")
        if problems:
            raise UnsupportedConfigError(
                f"model {name!r}: the embedded onnxruntime backend does not support: " + "; ".join(problems)
            )
        return cls(
            name=name,
            max_batch_size=int(config.get("max_batch_size") or 0),
            inputs=inputs,
            outputs=outputs,
            filename=config.get("default_model_filename") or "model.onnx",
            parameters=parameters,
            graph_level=int(graph["level"]) if "level" in graph else None,
            gpu_accelerators=list(accelerators.get("gpu_execution_accelerator") or []),
            cpu_accelerators=list(accelerators.get("cpu_execution_accelerator") or []),
        )


def resolve_model_path(model_dir: Path, version: str | int, filename: str) -> Path:
    """``<model_dir>/<version>/<filename>``; a directory there must hold ``model.onnx`` (external data)."""
    path = Path(model_dir) / str(version) / filename
    if path.is_dir():
        path = path / "model.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model file not found: {path}")
    return path


class OrtModel:
    """One ONNX Runtime session serving one model instance, with request batching."""

    def __init__(
        self,
        spec: ModelSpec,
        model_path: Path,
        *,
        use_gpu: bool = False,
        device_id: int = 0,
        logger: Callable[[str, str], None] | None = None,
    ) -> None:
        self.spec = spec
        self._log = logger or (lambda level, msg: log.log(getattr(logging, level), msg))
        self._output_names = [o.name for o in spec.outputs]
        openvino = next((a for a in spec.cpu_accelerators if a.get("name") == OPENVINO), None)
        self._openvino = None
        if openvino is not None and not use_gpu:
            self._openvino = self._load_openvino(model_path, openvino)
        if self._openvino is None:
            self._load_onnxruntime(model_path, use_gpu, device_id)
        self._check_graph()
        warning = _onnx_metadata(model_path).get(WARNING_METADATA_KEY)
        if warning:
            self._log("WARNING", f"{spec.name}: {warning}")

    @property
    def engine(self) -> str:
        """What runs the model, in words (for the load log)."""
        if self._openvino is not None:
            return f"OpenVINO CPU ({self.precision}, {self._openvino_threads or 'all'} threads)"
        return f"ONNX Runtime {self.session.get_providers()}"

    def _load_openvino(self, model_path: Path, accelerator: dict[str, Any]) -> Any:
        try:
            import openvino as ov
        except ImportError:
            self._log("WARNING", f"{self.spec.name}: the openvino accelerator needs the openvino package; "
                      "serving on the ONNX Runtime CPU execution provider instead")  # fmt: skip
            return None
        parameters = accelerator.get("parameters") or {}
        self.precision = resolve_precision(parameters.get("precision", "auto"))
        threads = int(self.spec.parameters.get("intra_op_thread_count", "0") or 0)
        self._openvino_threads = threads
        config = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[self.precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(str(model_path), "CPU", config)
        self._ov_outputs = {self._port_name(port): port for port in compiled.outputs}
        self._ov_request = compiled.create_infer_request()
        return compiled

    def _load_onnxruntime(self, model_path: Path, use_gpu: bool, device_id: int) -> None:
        import onnxruntime as ort

        spec = self.spec
        options = ort.SessionOptions()
        params = spec.parameters
        if "intra_op_thread_count" in params:
            options.intra_op_num_threads = int(params["intra_op_thread_count"])
        if "inter_op_thread_count" in params:
            options.inter_op_num_threads = int(params["inter_op_thread_count"])
        if "execution_mode" in params:
            parallel = int(params["execution_mode"]) == 1
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
        if "enable_mem_arena" in params:
            options.enable_cpu_mem_arena = SESSION_PARAMETERS["enable_mem_arena"](params["enable_mem_arena"])
        if "enable_mem_pattern" in params:
            options.enable_mem_pattern = SESSION_PARAMETERS["enable_mem_pattern"](params["enable_mem_pattern"])
        # Native semantics: default all optimisations; -1 basic; 1 basic+extended; 2 disabled.
        levels = {
            None: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        if spec.graph_level not in levels:
            raise UnsupportedConfigError(
                f"model {spec.name!r}: optimization.graph.level {spec.graph_level} (allowed: -1, 1, 2)"
            )
        options.graph_optimization_level = levels[spec.graph_level]
        unknown = sorted(set(params) - set(SESSION_PARAMETERS))
        if unknown:
            self._log("WARNING", f"{spec.name}: ignoring parameters this backend does not use: {unknown}")

        providers = self._providers(ort, use_gpu, device_id)
        self._run_options = ort.RunOptions()
        if "memory.enable_memory_arena_shrinkage" in params:
            self._run_options.add_run_config_entry(
                "memory.enable_memory_arena_shrinkage", params["memory.enable_memory_arena_shrinkage"]
            )
        self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)

    def _providers(self, ort: Any, use_gpu: bool, device_id: int) -> list[Any]:
        available = set(ort.get_available_providers())
        accel_names = [a.get("name", "?") for a in self.spec.gpu_accelerators + self.spec.cpu_accelerators
                       if use_gpu or a.get("name") != OPENVINO]  # fmt: skip
        if use_gpu and "CUDAExecutionProvider" in available:
            providers: list[Any] = []
            for acc in self.spec.gpu_accelerators:
                if acc.get("name") == "tensorrt" and "TensorrtExecutionProvider" in available:
                    p = acc.get("parameters") or {}
                    trt = {"device_id": device_id, "trt_fp16_enable": p.get("precision_mode") == "FP16"}
                    providers.append(("TensorrtExecutionProvider", trt))
            providers.append(("CUDAExecutionProvider", {"device_id": device_id}))
            return [*providers, "CPUExecutionProvider"]
        if accel_names:
            self._log(
                "WARNING",
                f"{self.spec.name}: execution accelerators {accel_names} ignored: this embedded onnxruntime "
                "backend runs on the CPU execution provider",
            )
        return ["CPUExecutionProvider"]

    def _port_name(self, port: Any) -> str:
        """An OpenVINO port's name as the config names it: a port can carry several (OpenVINO gives an
        input the names of the tensors it folds into it, e.g. a Cast's output)."""
        names = port.get_names()
        wanted = [t.name for t in (*self.spec.inputs, *self.spec.outputs) if t.name in names]
        return wanted[0] if wanted else port.get_any_name()

    def _graph(self) -> tuple[dict[str, _GraphTensor], dict[str, _GraphTensor]]:
        """The loaded graph's inputs and outputs (name, numpy dtype, shape with dynamic axes not > 0)."""
        if self._openvino is not None:
            return tuple(
                {name: _GraphTensor(port.get_element_type().to_dtype(),
                                    [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()])
                 for port in ports for name in [self._port_name(port)]}
                for ports in (self._openvino.inputs, self._openvino.outputs)
            )  # type: ignore[return-value]  # fmt: skip
        return tuple(
            {node.name: _GraphTensor(ORT_TO_NUMPY.get(node.type), list(node.shape)) for node in nodes}
            for nodes in (self.session.get_inputs(), self.session.get_outputs())
        )  # type: ignore[return-value]

    def _check_graph(self) -> None:
        spec, problems = self.spec, []
        batch = 1 if spec.max_batch_size > 0 else 0
        graph_inputs, graph_outputs = self._graph()
        config_inputs = {t.name for t in spec.inputs}
        for missing in sorted(set(graph_inputs) - config_inputs):
            problems.append(f"graph input {missing!r} is not in the config")
        for kind, tensors, graph in (
            ("input", spec.inputs, graph_inputs),
            ("output", spec.outputs, graph_outputs),
        ):
            for t in tensors:
                node = graph.get(t.name)
                if node is None:
                    problems.append(f"config {kind} {t.name!r} is not in the graph (graph has {sorted(graph)})")
                    continue
                if node.dtype != t.dtype:
                    problems.append(f"{kind} {t.name!r}: config dtype {t.dtype} but graph has {node.dtype}")
                shape = node.shape
                if len(shape) != len(t.dims) + batch:
                    problems.append(
                        f"{kind} {t.name!r}: config dims {list(t.dims)} (max_batch_size {spec.max_batch_size}) "
                        f"do not match the graph's rank-{len(shape)} shape {shape}"
                    )
                    continue
                if batch and isinstance(shape[0], int) and shape[0] > 0:
                    problems.append(
                        f"{kind} {t.name!r}: max_batch_size > 0 needs a dynamic first axis, graph has {shape}"
                    )
                for want, have in zip(t.dims, shape[batch:], strict=True):
                    if want != -1 and isinstance(have, int) and have > 0 and want != have:
                        problems.append(f"{kind} {t.name!r}: config dims {list(t.dims)} vs graph shape {shape}")
                        break
        if problems:
            raise UnsupportedConfigError(f"model {spec.name!r} does not match its ONNX graph: " + "; ".join(problems))

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs of ``feeds`` in config order, in runs of at most ``s2s_windows_per_run`` batch items
        (windows): whatever the batcher merged, a run's activations stay those of that many windows."""
        step = int(self.spec.parameters.get("s2s_windows_per_run") or 0)
        rows = len(next(iter(feeds.values()))) if self.spec.max_batch_size > 0 else 0
        if step <= 0 or rows <= step:
            return self._run_once(feeds)
        parts = [self._run_once({k: v[i : i + step] for k, v in feeds.items()}) for i in range(0, rows, step)]
        return [np.concatenate([part[j] for part in parts]) for j in range(len(parts[0]))]

    def _run_once(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._openvino is not None:
            results = self._ov_request.infer(feeds)
            # the request reuses its output buffers: copy before the next run
            return [np.array(results[self._ov_outputs[name]]) for name in self._output_names]
        return self.session.run(self._output_names, feeds, self._run_options)

    def infer(self, requests: Sequence[dict[str, np.ndarray]]) -> list[list[np.ndarray] | Exception]:
        """Serve a list of requests; each gets its outputs or its own exception, in order.

        With ``max_batch_size > 0`` the requests whose non-batch shapes agree run as one batch.
        If a batched run fails, its requests are retried one by one so that only the bad ones fail.
        """
        results: list[list[np.ndarray] | Exception | None] = [None] * len(requests)
        if self.spec.max_batch_size <= 0:
            groups = [[i] for i in range(len(requests))]
        else:
            by_shape: dict[tuple, list[int]] = {}
            for i, feeds in enumerate(requests):
                key = tuple((name, arr.shape[1:]) for name, arr in sorted(feeds.items()))
                by_shape.setdefault(key, []).append(i)
            groups = list(by_shape.values())
        for group in groups:
            if len(group) == 1:
                results[group[0]] = self._run_one(requests[group[0]])
                continue
            sizes = [len(next(iter(requests[i].values()))) for i in group]
            feeds = {name: np.concatenate([requests[i][name] for i in group]) for name in requests[group[0]]}
            try:
                outputs = self.run(feeds)
            except Exception:  # isolate the failing request(s)
                for i in group:
                    results[i] = self._run_one(requests[i])
                continue
            bounds = np.cumsum([0, *sizes])
            for k, i in enumerate(group):
                results[i] = [out[bounds[k] : bounds[k + 1]] for out in outputs]
        return results  # type: ignore[return-value]

    def _run_one(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray] | Exception:
        try:
            return self.run(feeds)
        except Exception as exc:
            return exc


@dataclass(frozen=True)
class _GraphTensor:
    dtype: np.dtype | None
    shape: list[Any]


def _onnx_metadata(model_path: Path) -> dict[str, str]:
    """The ONNX file's metadata properties (without loading external weights)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(model_path), load_external_data=False).metadata_props}


class TritonPythonModel:
    """Adapter between the Triton Python backend and :class:`OrtModel`."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        logger = pb_utils.Logger

        def log_to_triton(level: str, message: str) -> None:
            {"WARNING": logger.log_warn, "ERROR": logger.log_error}.get(level, logger.log_info)(message)

        self.spec = ModelSpec.from_config(config)
        path = resolve_model_path(Path(args["model_repository"]), args["model_version"], self.spec.filename)
        use_gpu = args.get("model_instance_kind") == "GPU"
        self.model = OrtModel(
            self.spec,
            path,
            use_gpu=use_gpu,
            device_id=int(args.get("model_instance_device_id") or 0),
            logger=log_to_triton,
        )
        logger.log_info(f"{self.spec.name}: loaded {path} on {self.model.engine} ({args.get('model_instance_name')})")

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds = [
            {t.name: pb_utils.get_input_tensor_by_name(request, t.name).as_numpy() for t in self.spec.inputs}
            for request in requests
        ]
        responses = []
        for result in self.model.infer(feeds):
            if isinstance(result, Exception):
                error = pb_utils.TritonError(f"{self.spec.name}: inference failed: {result}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            tensors = [
                pb_utils.Tensor(spec.name, np.ascontiguousarray(value, dtype=spec.dtype))
                for spec, value in zip(self.spec.outputs, result, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.model = None
