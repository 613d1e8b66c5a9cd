"""`s2s export`: PyTorch vs ONNX Runtime vs Triton for every model, configs, manifest, TensorRT (GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from s2s.constants import REGNET
from s2s.errors import OptionError
from s2s.export.onnx_export import OPSET, export_repository
from s2s.export.specs import ExportOptions, build_exports
from s2s.export.triton_config import ServingOptions, model_config, pipeline_configs, relink_repository
from s2s.models.melgan import build_melgan, melgan_checkpoint_state
from s2s.repository import MODEL_NAMES
from s2s.video import VideoLimits
from s2s.windowing import PreprocessOptions
from tests.conftest import Serve

REPO_ROOT = Path(__file__).resolve().parents[1]
#: relative tolerance of ONNX Runtime / Triton against PyTorch fp32 (max |diff| / max |reference|)
REL_TOL = 1e-4


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """All four models (reference generator, MelGAN) exported once, without warm-up."""
    repo = tmp_path_factory.mktemp("model_repository")
    options = ExportOptions(seed=0)
    # fp32: these tests hold the served graphs to PyTorch's numbers (bf16 has its own accuracy gate)
    manifest = export_repository(repo, options, ServingOptions(warmup_frames=0, cpu_precision="fp32"))
    return repo, {e.name: e for e in build_exports(options)}, manifest


def torch_outputs(export, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    with torch.no_grad():
        out = export.module(*inputs)
    return [out.numpy()] if isinstance(out, torch.Tensor) else [o.numpy() for o in out]


def test_exported_graphs_are_named_and_fixed_opset(exported):
    repo, exports, _ = exported
    for name in MODEL_NAMES:
        model = onnx.load(str(repo / name / "1" / "model.onnx"), load_external_data=False)
        assert model.opset_import[0].version == OPSET
        assert [i.name for i in model.graph.input] == [t.name for t in exports[name].inputs]
        assert [o.name for o in model.graph.output] == [t.name for t in exports[name].outputs]
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["s2s_model"] == name and "seeded random" in meta["s2s_warning"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_onnxruntime_matches_pytorch(exported, name):
    """Shapes differ from the traced ones (3 windows, 7 frames): the dynamic axes really are dynamic."""
    repo, exports, _ = exported
    export = exports[name]
    inputs = export.examples(windows=3, frames=7, seed=42)  # video frames: the vocoder gets 4 x 7 mel frames
    session = ort.InferenceSession(str(repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    ours = session.run(None, {t.name: x.numpy() for t, x in zip(export.inputs, inputs, strict=True)})
    for got, want in zip(ours, torch_outputs(export, inputs), strict=True):
        assert got.shape == want.shape
        assert rel_err(got, want) < REL_TOL


def test_output_shapes_follow_the_recipe(exported):
    repo, exports, _ = exported
    gen = ort.InferenceSession(str(repo / "generator" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        t.name: x.numpy()
        for t, x in zip(exports["generator"].inputs, exports["generator"].examples(1, 11), strict=True)
    }
    (mel,) = gen.run(None, feeds)
    assert mel.shape == (1, REGNET.n_mels, REGNET.mel_frames(11))
    assert mel.min() >= 0.0 and mel.max() <= 1.0
    voc = ort.InferenceSession(str(repo / "vocoder" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (wav,) = voc.run(None, {"mel": mel})
    assert wav.shape == (1, REGNET.samples(11))


def test_manifest_records_sources(exported):
    repo, _, manifest = exported
    on_disk = json.loads((repo / "manifest.json").read_text())
    assert on_disk["models"].keys() == set(MODEL_NAMES)
    for entry in on_disk["models"].values():
        assert (repo / entry["file"]).is_file()
        assert entry["noise_weights"] is True and "seed" in entry["source"]
        assert entry["opset"] == OPSET
    assert on_disk["models"]["generator"]["parameters"] == manifest["models"]["generator"]["parameters"]


def test_served_models_answer_like_pytorch(exported, tmp_path):
    """Every exported model through the real server, over gRPC (TSN, generator) and HTTP (vocoder)."""
    repo, exports, _ = exported
    serve = Serve(repo, tmp_path, ["--shm-size", "64M"]).start().wait_ready(timeout_s=300)
    try:
        assert "weights are seeded random" in serve.stderr(), "the server log must say the output is noise"
        with grpcclient.InferenceServerClient(serve.grpc_url) as grpc:
            for name in ("tsn_rgb", "tsn_flow", "generator"):
                export = exports[name]
                inputs = export.examples(windows=2, frames=5, seed=7)
                requests = []
                for t, x in zip(export.inputs, inputs, strict=True):
                    r = grpcclient.InferInput(t.name, list(x.shape), t.triton_type.removeprefix("TYPE_"))
                    r.set_data_from_numpy(x.numpy())
                    requests.append(r)
                result = grpc.infer(name, requests)
                want = torch_outputs(export, inputs)[0]
                assert rel_err(result.as_numpy(export.outputs[0].name), want) < REL_TOL, name
        with httpclient.InferenceServerClient(serve.http_url) as http:
            export = exports["vocoder"]
            (mel,) = export.examples(windows=1, frames=10, seed=8)
            assert mel.shape == (1, REGNET.n_mels, REGNET.mel_frames(10))  # the spec's time scale
            r = httpclient.InferInput("mel", list(mel.shape), "FP32")
            r.set_data_from_numpy(mel.numpy())
            wav = http.infer("vocoder", [r]).as_numpy("waveform")
            assert wav.shape == (1, REGNET.samples(10))
            assert rel_err(wav, torch_outputs(export, (mel,))[0]) < REL_TOL
    finally:
        serve.stop()


def test_committed_configs_are_what_export_writes():
    """model_repository/*/config.pbtxt are what `s2s export` writes by default (demo weights), byte for byte."""
    exports = build_exports(ExportOptions().with_demo_weights())
    for export in exports:
        committed = (REPO_ROOT / "model_repository" / export.name / "config.pbtxt").read_text()
        assert committed == model_config(export, ServingOptions()), f"regenerate with `s2s export` ({export.name})"
    generator = next(e for e in exports if e.name == "generator").extra
    preprocess = PreprocessOptions(z_dim=generator["z_dim"])
    configs = pipeline_configs(ServingOptions(), preprocess, tuple(generator["inputs"]))
    for name, text in configs.items():
        committed = (REPO_ROOT / "model_repository" / name / "config.pbtxt").read_text()
        assert committed == text, f"regenerate with `s2s export` ({name})"


def test_pipeline_limits_must_fit_the_batch():
    with pytest.raises(ValueError, match="needs 7 windows"):
        pipeline_configs(
            ServingOptions(max_windows=6), PreprocessOptions(z_dim=8, limits=VideoLimits(max_duration_s=61))
        )


def test_configs_carry_warmup_and_trt_accelerator():
    export = build_exports(ExportOptions(), ("vocoder",))[0]
    text = model_config(export, ServingOptions(warmup_frames=215, trt_accelerator=True))
    assert "dims: [ 80, 860 ]" in text and "model_warmup" in text
    assert 'name: "tensorrt"' in text and 'value: "FP16"' in text
    plan = model_config(export, ServingOptions(format="tensorrt"))
    assert 'platform: "tensorrt_plan"' in plan and "model.plan" in plan and "onnxruntime" not in plan
    assert "trt_engine_cache_path" not in text
    cached = model_config(export, ServingOptions(trt_accelerator=True, trt_cache_path="/trt-cache/h100-sm90-trt10.5.0"))
    assert 'parameters { key: "trt_engine_cache_path" value: "/trt-cache/h100-sm90-trt10.5.0" }' in cached


def test_onnx_configs_name_the_openvino_cpu_accelerator_except_on_the_gpu():
    from s2s.export.triton_config import model_config_dict

    export = build_exports(ExportOptions(), ("vocoder",))[0]

    def accelerators(**options) -> dict:
        return (
            model_config_dict(model_config(export, ServingOptions(**options)))
            .get("optimization", {})
            .get("execution_accelerators", {})
        )

    assert accelerators()["cpu_execution_accelerator"] == [{"name": "openvino", "parameters": {"precision": "auto"}}]
    both = accelerators(cpu_precision="bf16", trt_accelerator=True)  # one block, both kinds
    assert both["cpu_execution_accelerator"][0]["parameters"] == {"precision": "bf16"}
    assert both["gpu_execution_accelerator"][0]["name"] == "tensorrt"
    assert "cpu_execution_accelerator" not in accelerators(device="gpu", trt_accelerator=True)
    assert accelerators(cpu_accelerator="none") == {} and accelerators(format="tensorrt") == {}
    with pytest.raises(OptionError):
        ServingOptions(cpu_precision="int4")


def test_gpu_profile_puts_networks_and_tvl1_preprocess_on_the_gpu():
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    export = build_exports(ExportOptions(), ("vocoder",))[0]
    assert "kind: KIND_GPU" in model_config(export, ServingOptions(device="gpu"))
    assert "kind: KIND_AUTO" in model_config(export, ServingOptions())
    with pytest.raises(ValueError, match="unknown device"):
        ServingOptions(device="tpu")

    def preprocess_config(device: str, flow: str) -> dict:
        options = PreprocessOptions(flow_method=flow, z_dim=64)
        text = pipeline_configs(ServingOptions(device=device), options)["preprocess"]
        message = text_format.Parse(text, model_config_pb2.ModelConfig())
        return json_format.MessageToDict(message, preserving_proto_field_name=True)

    gpu = preprocess_config("gpu", "tvl1")
    assert gpu["instance_group"][0]["kind"] == "KIND_GPU"
    assert gpu["parameters"]["FORCE_CPU_ONLY_INPUT_TENSORS"]["string_value"] == "no"
    assert PreprocessOptions.from_model_config(gpu).flow_method == "tvl1"  # what the model reads at load
    for device, flow in (("gpu", "dis"), ("auto", "tvl1")):  # OpenCV on the CPU
        config = preprocess_config(device, flow)
        assert config["instance_group"][0]["kind"] == "KIND_CPU"
        assert "FORCE_CPU_ONLY_INPUT_TENSORS" not in config["parameters"]  # the Python backend's default: yes


def test_tensorrt_plan_cache_builds_once_per_graph_profile_and_device(tmp_path):
    """The cache logic with a stand-in for the GPU-only TensorRT build (its real run is the gpu test)."""
    from s2s.export.tensorrt import TensorRTProfile, build_plan_cached, device_key

    assert device_key("NVIDIA H100 80GB HBM3", (9, 0), "10.5.0") == "nvidia-h100-80gb-hbm3-sm90-trt10.5.0"
    assert device_key("NVIDIA L4", (8, 9), "10.5.0") != device_key("NVIDIA L4", (8, 9), "10.6.0")
    export = build_exports(ExportOptions(), ("vocoder",))[0]
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"graph one")
    builds = []

    def build(onnx_in, plan_out, export_, profile):
        builds.append(profile)
        plan_out.write_bytes(b"plan of " + onnx_in.read_bytes())
        return plan_out

    cache = tmp_path / "cache" / "some-gpu-sm90-trt10.5.0"
    plan = tmp_path / "repo" / "model.plan"
    plan.parent.mkdir()
    assert build_plan_cached(onnx_path, plan, export, None, cache, build) == (plan, False)
    plan.unlink()
    assert build_plan_cached(onnx_path, plan, export, None, cache, build) == (plan, True)  # a restarted pod
    assert plan.read_bytes() == b"plan of graph one" and len(builds) == 1
    assert build_plan_cached(onnx_path, plan, export, TensorRTProfile(max_windows=2), cache, build)[1] is False
    onnx_path.write_bytes(b"graph two")  # new weights: a new plan, not the stale one
    assert build_plan_cached(onnx_path, plan, export, None, cache, build)[1] is False
    assert plan.read_bytes() == b"plan of graph two" and len(builds) == 3
    assert sorted(p.suffix for p in cache.iterdir()) == [".plan"] * 3  # no partial files left


def test_trt_cache_without_a_gpu_is_a_clear_error(tmp_path, caplog):
    from s2s.cli import main

    code = main(["export", "--model-repository", str(tmp_path / "repo"), "--models", "vocoder",
                 "--trt-accelerator", "--trt-cache", str(tmp_path / "cache")])  # fmt: skip
    assert code == 1
    assert "--trt-cache needs an NVIDIA GPU" in caplog.text
    assert not (tmp_path / "repo").exists() and not (tmp_path / "cache").exists()


def test_export_cli_with_checkpoint_and_errors(tmp_path):
    torch.save(melgan_checkpoint_state(build_melgan(seed=5)), tmp_path / "best_netG.pt")
    repo = tmp_path / "repo"
    cmd = [sys.executable, "-m", "s2s", "export", "--model-repository", str(repo), "--models", "vocoder"]
    ok = subprocess.run([*cmd, "--vocoder-checkpoint", str(tmp_path / "best_netG.pt")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    entry = json.loads((repo / "manifest.json").read_text())["models"]["vocoder"]
    assert entry["noise_weights"] is False and len(entry["source"]["sha256"]) == 64
    assert "NOISE" not in ok.stdout
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    bad = subprocess.run([*cmd, "--vocoder-checkpoint", str(tmp_path / "bad.pt")], capture_output=True, text=True)
    assert bad.returncode == 1 and "s2s export failed: cannot read checkpoint" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_export_uses_the_demo_weights_unless_told_otherwise(tmp_path):
    from s2s.models.checkpoints import portable_path
    from s2s.weights import DEMO_GENERATOR, DEMO_VOCODER

    assert DEMO_GENERATOR.is_file() and DEMO_VOCODER.is_file(), "the demo weights ship with the package"
    cmd = [sys.executable, "-m", "s2s", "export", "--models", "tsn_flow,generator,vocoder", "--warmup-frames", "0"]
    demo = subprocess.run([*cmd, "--model-repository", str(tmp_path / "demo")], capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr
    # the export says which path the networks take on this CPU (the default accelerator, its precision here)
    from s2s.runtime.ort_backend import cpu_path

    assert f"networks on this machine's CPU (embedded server): {cpu_path('openvino')}" in demo.stdout
    assert cpu_path("openvino").startswith("OpenVINO ") and cpu_path("none").startswith("ONNX Runtime fp32")
    models = json.loads((tmp_path / "demo" / "manifest.json").read_text())["models"]
    # recorded relative to the project, never as this machine's absolute path
    assert (
        models["generator"]["source"]["checkpoint"]
        == portable_path(DEMO_GENERATOR)
        == "s2s/weights/" + DEMO_GENERATOR.name
    )
    assert models["vocoder"]["source"]["checkpoint"] == portable_path(DEMO_VOCODER)
    assert models["generator"]["z_dim"] == 64 and models["generator"]["config"] == "small"
    # the seeded flow encoder is the one the demo generator was trained on: not noise
    assert not any(m["noise_weights"] for m in models.values()) and "NOISE" not in demo.stdout
    assert "trained_generator" in models["tsn_flow"]["source"]
    seeded = subprocess.run([*cmd, "--model-repository", str(tmp_path / "seeded"), "--weights", "seeded",
                             "--generator-config", "small"],
                            capture_output=True, text=True)  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    assert all(
        m["noise_weights"] for m in json.loads((tmp_path / "seeded" / "manifest.json").read_text())["models"].values()
    )
    other = subprocess.run(
        [*cmd, "--model-repository", str(tmp_path / "other"), "--seed", "3"], capture_output=True, text=True
    )
    assert other.returncode == 1 and "trained on other tsn_" in other.stderr


def test_hifigan_vocoder_exports_with_parity(tmp_path):
    options = ExportOptions(vocoder="hifigan-v3")
    export_repository(tmp_path, options, ServingOptions(warmup_frames=0), ("vocoder",))
    export = build_exports(options, ("vocoder",))[0]
    (mel,) = export.examples(windows=2, frames=4, seed=3)
    session = ort.InferenceSession(str(tmp_path / "vocoder" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (wav,) = session.run(None, {"mel": mel.numpy()})
    assert rel_err(wav, torch_outputs(export, (mel,))[0]) < REL_TOL


def test_istft_vocoder_exports_with_parity_and_is_named_by_its_checkpoint(tmp_path):
    from s2s.models.istft import build_istft_vocoder, istft_checkpoint

    torch.save(istft_checkpoint(build_istft_vocoder(seed=6)), tmp_path / "best_netG.pt")
    options = ExportOptions(vocoder_checkpoint=tmp_path / "best_netG.pt")  # no --vocoder: the file says istft
    manifest = export_repository(tmp_path / "repo", options, ServingOptions(warmup_frames=0), ("vocoder",))
    assert manifest["models"]["vocoder"]["vocoder"] == "istft"
    export = build_exports(options, ("vocoder",))[0]
    session = ort.InferenceSession(str(tmp_path / "repo" / "vocoder" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    for frames in (4, 300):  # the noise table read past its end (1024 mel frames) too
        (mel,) = export.examples(windows=2, frames=frames, seed=3)
        (wav,) = session.run(None, {"mel": mel.numpy()})
        assert wav.shape == (2, mel.shape[-1] * REGNET.hop_length)
        assert rel_err(wav, torch_outputs(export, (mel,))[0]) < REL_TOL
    with pytest.raises(OptionError, match="holds the istft vocoder"):
        build_exports(ExportOptions(vocoder="melgan", vocoder_checkpoint=tmp_path / "best_netG.pt"), ("vocoder",))
    # it reads its noise from the start again every window stride (in mel frames) of the windows it serves
    assert manifest["models"]["vocoder"]["noise_period"] == 4 * (REGNET.frames_per_window - REGNET.overlap_frames)
    other = PreprocessOptions(overlap_frames=10)
    with pytest.raises(OptionError, match="reads its noise from the start again every 776 mel frames"):
        export_repository(tmp_path / "repo", options, ServingOptions(warmup_frames=0), ("generator",), preprocess=other)
    assert "generator" not in json.loads((tmp_path / "repo" / "manifest.json").read_text())["models"], "refused first"
    manifest = export_repository(tmp_path / "repo", options, ServingOptions(warmup_frames=0), ("vocoder",), None, other)
    assert manifest["models"]["vocoder"]["noise_period"] == 4 * (REGNET.frames_per_window - 10)
    assert manifest["preprocess"]["overlap_frames"] == 10
    # exported again alone, it follows the windows the repository serves; served with others, it is refused
    manifest = export_repository(tmp_path / "repo", options, ServingOptions(warmup_frames=0), ("vocoder",))
    assert manifest["models"]["vocoder"]["noise_period"] == 4 * (REGNET.frames_per_window - 10)
    with pytest.raises(OptionError, match="every 820 mel frames"):
        relink_repository(tmp_path / "repo", tmp_path / "relinked", PreprocessOptions(z_dim=8))
    assert not (tmp_path / "relinked").exists()


@pytest.mark.gpu
def test_tensorrt_plans_build_and_match_onnx(tmp_path):
    """GPU only: FP16 TensorRT plans for every model deserialize with the spec's tensor names."""
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    from s2s.export.tensorrt import TensorRTProfile

    profile = TensorRTProfile(max_windows=2, opt_frames=16, max_frames=32)
    manifest = export_repository(
        tmp_path, ExportOptions(), ServingOptions(format="tensorrt", warmup_frames=0), None, profile
    )
    for name in MODEL_NAMES:
        assert (tmp_path / name / "1" / "model.plan").stat().st_size > 0
        assert manifest["models"][name]["format"] == "tensorrt"
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine((tmp_path / name / "1" / "model.plan").read_bytes())
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        export = build_exports(ExportOptions(), (name,))[0]
        assert names == {t.name for t in export.inputs + export.outputs}


def test_doctor_chains_the_served_networks(exported, tmp_path):
    """The main job's check: one window through tsn_rgb, tsn_flow, generator and vocoder, as served."""
    import soundfile

    repo, _, _ = exported
    wav = tmp_path / "chain.wav"
    cmd = [sys.executable, "-m", "s2s", "doctor", "--model-repository", str(repo), "--frames", "6", "--wav", str(wav)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert f"mel (1, 80, {REGNET.mel_frames(6)})" in result.stdout
    audio, rate = soundfile.read(str(wav))
    assert rate == REGNET.sample_rate and audio.shape == (REGNET.samples(6),)
    assert np.abs(audio).max() <= 1.0
