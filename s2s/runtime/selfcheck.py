"""End-to-end check of the serving stack: the embedded Triton, the onnxruntime backend, both protocols.

Builds a throw-away model repository holding one tiny ONNX model (``y = 2 * x + 1``) under
``backend: "onnxruntime"`` with dynamic batching, starts the server on free ports, infers over HTTP
and gRPC, fires concurrent requests and reads the server statistics to confirm that the dynamic
batcher really batched them. ``s2s doctor`` runs it; the tests build their models with the same helpers.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2s.errors import S2SError
from s2s.runtime.server import ServerOptions, TritonServer


class SelfCheckError(S2SError):
    """The served models answered, but not what they must."""


AFFINE_CONFIG = """\
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ {width} ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ {width} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}
instance_group [ {{ count: {instances} kind: KIND_AUTO }} ]
"""


def write_affine_onnx(path: Path, width: int = 4, scale: float = 2.0, offset: float = 1.0) -> Path:
    """An ONNX graph ``y = scale * x + offset`` on float32 ``x: (batch, width)``."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])
    consts = [
        helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
        helper.make_tensor("offset", TensorProto.FLOAT, [], [offset]),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["y"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "affine", [x], [y], consts), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_affine_model(
    repository: Path,
    name: str = "affine",
    *,
    width: int = 4,
    max_batch_size: int = 16,
    delay_us: int = 20000,
    instances: int = 1,
) -> Path:
    """A complete model folder ``<repository>/<name>`` (config.pbtxt + 1/model.onnx)."""
    model_dir = repository / name
    write_affine_onnx(model_dir / "1" / "model.onnx", width=width)
    (model_dir / "config.pbtxt").write_text(
        AFFINE_CONFIG.format(
            name=name, width=width, max_batch_size=max_batch_size, delay_us=delay_us, instances=instances
        )
    )
    return model_dir


@dataclass
class CheckResult:
    http_ok: bool
    grpc_ok: bool
    requests: int
    inference_count: int
    execution_count: int
    server_version: str

    @property
    def batched(self) -> bool:
        return self.execution_count < self.inference_count


def run_selfcheck(concurrency: int = 8, echo=None) -> CheckResult:
    """Run the whole check in a temporary repository; raises on any failure."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    with tempfile.TemporaryDirectory(prefix="s2s-selfcheck-") as tmp:
        repo = Path(tmp) / "models"
        write_affine_model(repo)
        options = ServerOptions.local(repo, log_level="warning", exit_timeout_s=5)
        with TritonServer(options, echo=echo):
            x = np.arange(8, dtype=np.float32).reshape(2, 4)
            expected = 2 * x + 1
            http = httpclient.InferenceServerClient(options.http_url, concurrency=concurrency)
            grpc = grpcclient.InferenceServerClient(options.grpc_url)
            try:
                version = http.get_server_metadata()["version"]
                hin = httpclient.InferInput("x", list(x.shape), "FP32")
                hin.set_data_from_numpy(x)
                http_ok = np.allclose(http.infer("affine", [hin]).as_numpy("y"), expected)
                gin = grpcclient.InferInput("x", list(x.shape), "FP32")
                gin.set_data_from_numpy(x)
                grpc_ok = np.allclose(grpc.infer("affine", [gin]).as_numpy("y"), expected)

                requests = concurrency * 4
                one = httpclient.InferInput("x", [1, 4], "FP32")
                one.set_data_from_numpy(x[:1])
                # tritonclient.http is gevent-based: concurrency through async_infer, not threads
                pending = [http.async_infer("affine", [one]) for _ in range(requests)]
                results = [p.get_result().as_numpy("y") for p in pending]
                if not all(np.allclose(r, expected[:1]) for r in results):
                    raise SelfCheckError("concurrent requests to the affine model returned wrong values")
                time.sleep(0.1)
                stats = http.get_inference_statistics("affine", headers=options.admin_headers())["model_stats"][0]
            finally:
                http.close()
                grpc.close()
        return CheckResult(
            http_ok=bool(http_ok),
            grpc_ok=bool(grpc_ok),
            requests=requests + 2,
            inference_count=int(stats["inference_count"]),
            execution_count=int(stats["execution_count"]),
            server_version=version,
        )


@dataclass
class ChainResult:
    """One synthetic window through tsn_rgb, tsn_flow, generator and vocoder, as served."""

    frames: int
    seconds: dict[str, float]
    mel_shape: tuple[int, ...]
    samples: int
    wav_path: Path | None


def run_repository_chain(
    repository: Path, frames: int, wav_path: Path | None = None, echo=None, seed: int = 0
) -> ChainResult:
    """Serve ``repository`` and push one synthetic window (``frames`` video frames) through its four networks.

    The frames are random uint8 images and flow fields, so this checks that the exported models load and
    chain with the right names, dtypes and shapes - not what they sound like.
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    from s2s.constants import REGNET
    from s2s.motion import MOTION_WIDTH

    rng = np.random.default_rng(seed)
    size = REGNET.image_size
    options = ServerOptions.local(
        repository, log_level="warning", exit_timeout_s=5, shm_default_byte_size=64 * 1024 * 1024
    )
    seconds: dict[str, float] = {}

    def infer(client, model: str, **tensors: np.ndarray) -> np.ndarray:
        inputs = []
        for name, value in tensors.items():
            tensor = grpcclient.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        start = time.perf_counter()
        result = client.infer(model, inputs)
        seconds[model] = time.perf_counter() - start
        config = client.get_model_config(model, as_json=True, headers=options.admin_headers("grpc"))["config"]
        return result.as_numpy(config["output"][0]["name"])

    with TritonServer(options, echo=echo), grpcclient.InferenceServerClient(options.grpc_url) as client:
        rgb = rng.integers(0, 256, (1, frames, 3, size, size), dtype=np.uint8)
        flow = rng.integers(0, 256, (1, frames, 2, size, size), dtype=np.uint8)
        made = {"rgb_features": infer(client, "tsn_rgb", frames=rgb),
                "flow_features": infer(client, "tsn_flow", frames=flow),
                "motion": rng.normal(0, 1, (1, frames, MOTION_WIDTH)).astype(np.float32)}  # fmt: skip
        config = client.get_model_config("generator", as_json=True, headers=options.admin_headers("grpc"))["config"]
        z_dim = next(t for t in config["input"] if t["name"] == "z")["dims"][0]
        z = rng.standard_normal((1, int(z_dim))).astype(np.float32)
        index = np.arange(frames, dtype=np.int32)[None]  # every frame distinct
        fed = {t["name"]: made[t["name"]] for t in config["input"] if t["name"] in made}  # what it is fed, as exported
        mel = infer(client, "generator", **fed, frame_index=index, z=z)
        waveform = infer(client, "vocoder", mel=mel)
    if waveform.shape != (1, REGNET.samples(frames)):
        raise SelfCheckError(f"vocoder returned {waveform.shape}, expected (1, {REGNET.samples(frames)})")
    if wav_path is not None:
        import soundfile

        wav_path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(wav_path), waveform[0], REGNET.sample_rate)
    return ChainResult(frames, seconds, tuple(mel.shape), waveform.shape[1], wav_path)
