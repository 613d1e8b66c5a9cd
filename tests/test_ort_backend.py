"""The onnxruntime backend's own logic, without a server: config parsing, graph checks, batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s2s.flags import parse_size
from s2s.runtime.ort_backend import ModelSpec, OrtModel, UnsupportedConfigError, resolve_model_path
from s2s.runtime.selfcheck import write_affine_onnx


def config(**overrides):
    base = {
        "name": "m",
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [4]}],
    }
    base.update(overrides)
    return base


def test_spec_reads_names_dtypes_dims_and_parameters():
    spec = ModelSpec.from_config(
        config(
            default_model_filename="w.onnx",
            parameters={"intra_op_thread_count": {"string_value": "2"}},
            optimization={"graph": {"level": 1}},
        )
    )
    assert spec.filename == "w.onnx" and spec.max_batch_size == 8 and spec.graph_level == 1
    assert spec.inputs[0].name == "x" and spec.inputs[0].dtype == np.float32 and spec.inputs[0].dims == (4,)
    assert spec.parameters == {"intra_op_thread_count": "2"}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"sequence_batching": {"max_sequence_idle_microseconds": 1}}, "sequence_batching"),
        ({"platform": "tensorrt_plan"}, "platform 'tensorrt_plan'"),
        ({"input": [{"name": "x", "data_type": "TYPE_STRING", "dims": [1]}]}, "data_type TYPE_STRING"),
        ({"input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4], "reshape": {"shape": [2, 2]}}]}, "reshape"),
        ({"input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4], "allow_ragged_batch": True}]}, "ragged"),
        ({"output": []}, "no outputs"),
        ({"parameters": {"intra_op_thread_count": {"string_value": "many"}}}, "intra_op_thread_count='many'"),
    ],
)
def test_spec_rejects_what_it_cannot_honour(overrides, named):
    with pytest.raises(UnsupportedConfigError, match="does not support") as info:
        ModelSpec.from_config(config(**overrides))
    assert named in str(info.value)


def test_graph_mismatch_names_the_tensor(tmp_path):
    path = write_affine_onnx(tmp_path / "1" / "model.onnx", width=4)
    spec = ModelSpec.from_config(config(output=[{"name": "z", "data_type": "TYPE_FP32", "dims": [4]}]))
    with pytest.raises(UnsupportedConfigError, match="config output 'z' is not in the graph"):
        OrtModel(spec, path)
    spec = ModelSpec.from_config(config(input=[{"name": "x", "data_type": "TYPE_FP32", "dims": [5]}]))
    with pytest.raises(UnsupportedConfigError, match=r"config dims \[5\]"):
        OrtModel(spec, path)


def test_resolve_model_path(tmp_path):
    write_affine_onnx(tmp_path / "3" / "model.onnx")
    assert resolve_model_path(tmp_path, 3, "model.onnx") == tmp_path / "3" / "model.onnx"
    write_affine_onnx(tmp_path / "4" / "model.onnx" / "model.onnx")  # a directory model (external data)
    assert resolve_model_path(tmp_path, "4", "model.onnx") == tmp_path / "4" / "model.onnx" / "model.onnx"
    with pytest.raises(FileNotFoundError, match=r"5/model\.onnx"):
        resolve_model_path(tmp_path, 5, "model.onnx")


def infer_recording(model: OrtModel, method: str, rows: tuple[int, ...], seed: int) -> list[int]:
    """Requests of ``rows`` rows each through ``model.infer``; returns the batch size each call of
    ``model.<method>`` saw, after checking that every result is its request's affine map (2 x + 1)."""
    sizes = []
    inner = getattr(model, method)
    setattr(model, method, lambda feeds: (sizes.append(feeds["x"].shape[0]), inner(feeds))[1])
    rng = np.random.default_rng(seed)
    requests = [{"x": rng.normal(size=(n, 4)).astype(np.float32)} for n in rows]
    for req, res in zip(requests, model.infer(requests), strict=True):
        np.testing.assert_allclose(res[0], 2 * req["x"] + 1, rtol=1e-6)
    return sizes


def test_infer_batches_equal_shapes_and_keeps_order(tmp_path):
    path = write_affine_onnx(tmp_path / "model.onnx", width=4)
    model = OrtModel(ModelSpec.from_config(config()), path)
    calls = infer_recording(model, "run", (1, 3, 2), seed=1)
    assert calls == [6], "three requests of equal inner shape must run as one batch of 6"


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_a_merged_batch_runs_at_most_windows_per_run_items_at_a_time(tmp_path, engine):
    """Memory bounded by construction: whatever the batcher merges, one run holds at most
    s2s_windows_per_run batch items; the outputs are those of one big run."""
    path = write_affine_onnx(tmp_path / "model.onnx", width=4)
    bounded = config(parameters={"s2s_windows_per_run": {"string_value": "2"}})
    model = OrtModel(ModelSpec.from_config(openvino(bounded) if engine == "openvino" else bounded), path)
    assert (model.engine.startswith("OpenVINO")) == (engine == "openvino")
    sizes = infer_recording(model, "_run_once", (1, 3, 3), seed=2)
    assert sizes == [2, 2, 2, 1], "seven merged windows run two at a time"


def test_parse_size():
    assert parse_size("16M") == 16 * 1024**2
    assert parse_size("1G") == 1024**3
    assert parse_size("4096") == 4096
    assert parse_size("64MiB") == 64 * 1024**2


def openvino(config_dict: dict, precision: str = "fp32") -> dict:
    accelerator = {"name": "openvino", "parameters": {"precision": precision}}
    return {**config_dict, "optimization": {"execution_accelerators": {"cpu_execution_accelerator": [accelerator]}}}


def test_openvino_accelerator_runs_the_graph_on_openvino(tmp_path):
    path = write_affine_onnx(tmp_path / "model.onnx", width=4)
    model = OrtModel(
        ModelSpec.from_config(openvino(config(parameters={"intra_op_thread_count": {"string_value": "1"}}))), path
    )
    assert model.engine == "OpenVINO CPU (fp32, 1 threads)"
    rng = np.random.default_rng(2)
    requests = [{"x": rng.normal(size=(n, 4)).astype(np.float32)} for n in (2, 1, 3)]
    for req, res in zip(requests, model.infer(requests), strict=True):  # one batch of 6, split back
        np.testing.assert_allclose(res[0], 2 * req["x"] + 1, rtol=1e-6)
    first = model.run(requests[0])[0]
    model.run(requests[1])
    np.testing.assert_allclose(first, 2 * requests[0]["x"] + 1, rtol=1e-6)  # not overwritten by the next run
    with pytest.raises(UnsupportedConfigError, match=r"config dims \[5\]"):
        OrtModel(
            ModelSpec.from_config(openvino(config(input=[{"name": "x", "data_type": "TYPE_FP32", "dims": [5]}]))), path
        )
    with pytest.raises(UnsupportedConfigError, match="precision 'fp8'"):
        OrtModel(ModelSpec.from_config(openvino(config(), "fp8")), path)


def test_openvino_auto_precision_follows_the_cpu_and_a_missing_package_falls_back(tmp_path, monkeypatch):
    from s2s.runtime.ort_backend import native_bf16, resolve_precision

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    flags = next(line for line in cpuinfo if line.startswith("flags")).split()
    assert native_bf16() == bool({"amx_bf16", "avx512_bf16"} & set(flags))
    assert resolve_precision("auto") == ("bf16" if native_bf16() else "fp32") and resolve_precision("fp32") == "fp32"
    path = write_affine_onnx(tmp_path / "model.onnx", width=4)
    messages = []
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # the package is not installed
    model = OrtModel(ModelSpec.from_config(openvino(config())), path, logger=lambda level, msg: messages.append(msg))
    assert model.engine.startswith("ONNX Runtime") and any("needs the openvino package" in m for m in messages)


def test_openvino_bf16_encoders_match_fp32_on_real_pipeline_inputs(tmp_path):
    """The accuracy gate of the accelerated path: each TSN encoder's features on the frames and flow of a
    generated clip, through the real preprocess, stay within cosine 0.999 of ONNX Runtime fp32."""
    from s2s.export.onnx_export import export_onnx
    from s2s.export.specs import ExportOptions, build_exports
    from s2s.export.triton_config import ServingOptions, model_config, read_model_config
    from s2s.synth import make_video
    from s2s.windowing import PreprocessOptions, preprocess

    windows = preprocess(make_video(duration_s=2.0, fps=20.0, seed=5), PreprocessOptions(window_frames=43, z_dim=1))
    exports = build_exports(ExportOptions(generator_config="small"), ("tsn_rgb", "tsn_flow"), warn_noise=False)
    for export, frames in zip(exports, (windows.rgb, windows.flow), strict=True):
        path = export_onnx(export, tmp_path / export.name / "1" / "model.onnx")
        (tmp_path / export.name / "config.pbtxt").write_text(model_config(export, ServingOptions(warmup_frames=0)))
        served = read_model_config(tmp_path / export.name / "config.pbtxt")
        assert served["optimization"]["execution_accelerators"]["cpu_execution_accelerator"][0]["name"] == "openvino"
        reference = OrtModel(ModelSpec.from_config({**served, "optimization": {}}), path)
        fast = OrtModel(ModelSpec.from_config(openvino(served, "bf16")), path)
        assert fast.engine.startswith("OpenVINO CPU (bf16")
        feeds = {export.inputs[0].name: np.ascontiguousarray(frames[:1])}
        want, got = reference.run(feeds)[0].reshape(-1, 1024), fast.run(feeds)[0].reshape(-1, 1024)
        norms = np.linalg.norm(want, axis=1)
        silent = norms == 0  # e.g. the flow encoder on a frame without motion: ReLU'd to exactly zero
        assert np.abs(got[silent]).max(initial=0.0) <= 1e-3 * norms.max(), export.name
        cosine = np.sum(want * got, 1)[~silent] / (norms[~silent] * np.linalg.norm(got[~silent], axis=1))
        assert len(cosine) > 30 and cosine.min() >= 0.999, (export.name, float(cosine.min()))
