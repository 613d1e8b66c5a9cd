"""The onnxruntime backend's own logic, without a server: config parsing, graph checks, batching."""

from __future__ import annotations

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


def test_infer_batches_equal_shapes_and_keeps_order(tmp_path):
    path = write_affine_onnx(tmp_path / "model.onnx", width=4)
    model = OrtModel(ModelSpec.from_config(config()), path)
    calls = []
    run = model.run
    model.run = lambda feeds: (calls.append(feeds["x"].shape[0]), run(feeds))[1]
    rng = np.random.default_rng(1)
    requests = [{"x": rng.normal(size=(n, 4)).astype(np.float32)} for n in (1, 3, 2)]
    results = model.infer(requests)
    assert calls == [6], "three requests of equal inner shape must run as one batch of 6"
    for req, res in zip(requests, results, strict=True):
        np.testing.assert_allclose(res[0], 2 * req["x"] + 1, rtol=1e-6)


def test_parse_size():
    assert parse_size("16M") == 16 * 1024**2
    assert parse_size("1G") == 1024**3
    assert parse_size("4096") == 4096
    assert parse_size("64MiB") == 64 * 1024**2
