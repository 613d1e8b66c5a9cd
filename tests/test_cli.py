"""The command line: each layer's commands assembled once, flags read from the option records they fill
(one default each), the preprocess record's round trip through Triton parameters, and one error policy."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import subprocess
import sys

import pytest

from s2s.bench.harness import HarnessOptions
from s2s.cli import build_parser, main
from s2s.errors import OptionError, S2SError
from s2s.export.specs import ExportOptions
from s2s.export.tensorrt import TensorRTProfile
from s2s.export.triton_config import ServingOptions, pipeline_configs, with_instances
from s2s.flags import add_flags, flag, flags_of, format_size, from_flags, parse_size
from s2s.gateway.app import GatewaySettings
from s2s.repository import INPUTS_REVISION
from s2s.runtime.server import ServerOptions
from s2s.training.evaluate import EvalOptions
from s2s.training.train import TrainOptions
from s2s.video import VideoLimits
from s2s.windowing import PreprocessOptions

#: command -> the option records its flags fill
RECORDS = {
    ("serve",): (ServerOptions,),
    ("export",): (ExportOptions, ServingOptions, PreprocessOptions, TensorRTProfile),
    ("train",): (TrainOptions,),
    ("eval",): (EvalOptions,),
    ("gateway",): (GatewaySettings,),
    ("bench", "perf"): (HarnessOptions,),
}


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("command", list(RECORDS), ids=" ".join)
def test_without_flags_every_record_keeps_its_own_defaults(command, monkeypatch):
    monkeypatch.setenv("S2S_TRITON_ADMIN_KEY", "a-fixed-key-for-this-test")  # else each record draws its own
    args = parse(*command)
    for record in RECORDS[command]:
        assert from_flags(record, args) == record(), record.__name__


@pytest.mark.parametrize("command", list(RECORDS), ids=" ".join)
def test_every_declared_flag_is_on_its_command(command, capsys):
    """Each flag is declared once, on its field, and the command that fills the record offers it."""
    with pytest.raises(SystemExit):
        parse(*command, "--help")
    usage = capsys.readouterr().out
    for record in RECORDS[command]:
        for name, option in flags_of(record).items():
            assert option.startswith("-") or option == "triton_args"
            if option.startswith("-"):
                assert option in usage, f"{record.__name__}.{name}: {option} missing from `s2s {' '.join(command)}`"


def test_flags_fill_nested_records_and_convert_their_values():
    args = parse(
        "export", "--max-duration", "30", "--flow-method", "tvl1", "--preprocess-instances", "3", "--noise-seed", "7",
        "--max-windows", "4", "--trt-accelerator", "--trt-opt-frames", "100", "--vocoder", "hifigan-v3",
    )  # fmt: skip
    assert from_flags(PreprocessOptions, args) == PreprocessOptions(
        flow_method="tvl1", instances=3, seed=7, limits=VideoLimits(max_duration_s=30.0)
    )
    assert from_flags(ServingOptions, args) == ServingOptions(max_windows=4, trt_accelerator=True)
    assert from_flags(TensorRTProfile, args, max_windows=4) == TensorRTProfile(max_windows=4, opt_frames=100)
    assert from_flags(ExportOptions, args).vocoder == "hifigan-v3"
    serve = from_flags(ServerOptions, parse("serve", "--model", "s2s", "--model", "preprocess", "--shm-size", "64M",
                                            "--", "--log-format=ISO8601"))  # fmt: skip
    assert serve.load_models == ["s2s", "preprocess"] and serve.model_control_mode == "explicit"
    assert serve.shm_default_byte_size == 64 << 20 and serve.extra_args == ["--log-format=ISO8601"]
    perf = from_flags(HarnessOptions, parse("bench", "perf", "--concurrency", "1,4", "--request-count", "5"))
    assert perf.concurrency == (1, 4) and perf.measurement.request_count == 5
    gateway = from_flags(GatewaySettings, parse("gateway", "--max-upload", "1G", "--result-ttl", "2"))
    assert gateway.max_upload_bytes == 1 << 30 and gateway.result_ttl_s == 7200.0


def test_environment_defaults_are_read_when_the_record_is_made(monkeypatch):
    monkeypatch.setenv("S2S_TRITON_URL", "triton.example:9001")
    monkeypatch.setenv("S2S_MODEL_REPOSITORY", "/srv/models")
    assert from_flags(GatewaySettings, parse("gateway")).triton_url == "triton.example:9001"
    assert str(from_flags(ServerOptions, parse("serve")).model_repository) == "/srv/models"


def test_a_flag_is_declared_with_its_help_type_and_shown_default():
    @dataclasses.dataclass(frozen=True)
    class Sizes:
        limit: int = flag(16 << 20, "--limit", "most bytes, 50% of RAM", type=parse_size, shown=format_size(16 << 20))
        fast: bool = flag(False, "--fast", "go fast")
        plain: int = 3  # no flag: not on the command line

    parser = argparse.ArgumentParser()
    add_flags(parser, Sizes)
    text = parser.format_help()
    assert "most bytes, 50% of RAM (default: 16M)" in text and "--plain" not in text
    assert from_flags(Sizes, parser.parse_args(["--limit", "2G", "--fast"])) == Sizes(limit=2 << 30, fast=True)
    with pytest.raises(SystemExit):
        parser.parse_args(["--limit", "lots"])


@pytest.mark.parametrize("text", ["16M", "1G", "3K", "1000", "64M"])
def test_sizes_read_back_what_they_show(text):
    assert format_size(parse_size(text)) == text
    assert parse_size("1.5k") == 1536


# ------------------------------------------------------------------------------ the preprocess record
def test_preprocess_options_round_trip_through_triton_parameters():
    options = PreprocessOptions(flow_method="tvl1", window_frames=20, overlap_frames=3, z_dim=64, seed=3,
                                opencv_threads=2, instances=4,
                                limits=VideoLimits(max_duration_s=12.5, max_width=640))  # fmt: skip
    parameters = options.to_parameters()
    assert all(isinstance(v, str) for v in parameters.values()) and "instances" not in parameters
    assert PreprocessOptions.from_parameters(parameters, instances=4) == options
    # and as the written config.pbtxt, read back the way Triton hands it to the Python model
    from google.protobuf import json_format

    from s2s.export.triton_config import parse_model_config

    text = pipeline_configs(ServingOptions(max_windows=16), options)["preprocess"]
    config = json_format.MessageToDict(parse_model_config(text), preserving_proto_field_name=True)
    assert PreprocessOptions.from_model_config(config) == options


def test_preprocess_parameters_that_do_not_match_are_named():
    parameters = PreprocessOptions(z_dim=8).to_parameters()
    with pytest.raises(OptionError, match=r"unknown: \['colour'\]"):
        PreprocessOptions.from_parameters(parameters | {"colour": "red"}, instances=1)
    with pytest.raises(OptionError, match=r"missing: \['z_dim'\]"):
        PreprocessOptions.from_parameters({k: v for k, v in parameters.items() if k != "z_dim"}, instances=1)
    with pytest.raises(OptionError, match="window_frames='ten' is not a valid int"):
        PreprocessOptions.from_parameters(parameters | {"window_frames": "ten"}, instances=1)
    with pytest.raises(OptionError, match="z_dim is not set"):
        PreprocessOptions().to_parameters()
    with pytest.raises(OptionError, match="unknown flow method 'raft'"):
        PreprocessOptions(flow_method="raft")
    # a configuration exported before the inputs' revision was recorded computes other inputs (revision 1), and
    # one from a later s2s may too: both are named, not served as if they were this version's
    assert parameters["inputs_revision"] == str(INPUTS_REVISION)
    with pytest.raises(OptionError, match=r"missing: \['inputs_revision'\]"):
        PreprocessOptions.from_parameters({k: v for k, v in parameters.items() if k != "inputs_revision"}, 1)
    with pytest.raises(OptionError, match=f"inputs_revision 3: this s2s computes .* revision {INPUTS_REVISION}"):
        PreprocessOptions.from_parameters(parameters | {"inputs_revision": "3"}, instances=1)


def test_instance_counts_change_without_touching_the_rest_of_a_config():
    text = pipeline_configs(ServingOptions(), PreprocessOptions(z_dim=8))["preprocess"]
    from google.protobuf import json_format

    from s2s.export.triton_config import parse_model_config

    def as_dict(t: str) -> dict:
        return json_format.MessageToDict(parse_model_config(t), preserving_proto_field_name=True)

    before, after = as_dict(text), as_dict(with_instances(text, 5))
    assert after["instance_group"][0]["count"] == 5
    after["instance_group"][0]["count"] = before["instance_group"][0]["count"]
    assert after == before


# ------------------------------------------------------------------------------------- error policy
def test_project_errors_end_a_command_with_its_message_and_exit_1(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert main(["train", "--output", str(tmp_path), "--stages", "data,bogus"]) == 1
    assert "s2s train failed: unknown stage(s) ['bogus']" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(["export", "--model-repository", str(tmp_path / "r"), "--models", "vocoder",
                     "--vocoder-checkpoint", str(tmp_path / "missing.pt")]) == 1  # fmt: skip
    assert "s2s export failed" in caplog.text and "missing.pt" in caplog.text


def test_demo_without_the_embedded_server_says_how_to_get_it(tmp_path, monkeypatch, caplog):
    from s2s.runtime import embedded

    def absent():
        raise embedded.EmbeddedTritonNotFoundError("the embedded Triton server needs the nvidia-pytriton wheel")

    monkeypatch.setattr(embedded, "locate", absent)
    repo = tmp_path / "repo"
    (repo / "s2s").mkdir(parents=True)
    (repo / "s2s" / "config.pbtxt").write_text('name: "s2s"\n')
    (repo / "manifest.json").write_text('{"models": {}}\n')
    with caplog.at_level(logging.ERROR):
        code = main(["demo", "--model-repository", str(repo), "--output-dir", str(tmp_path / "out"), "--duration", "1"])
    assert code == 1 and "s2s demo failed: the embedded Triton server needs the nvidia-pytriton wheel" in caplog.text


def test_errors_are_the_projects_own_and_a_bug_keeps_its_traceback(tmp_path):
    from s2s.client.triton import ClientError
    from s2s.models.checkpoints import CheckpointError
    from s2s.runtime.embedded import EmbeddedTritonNotFoundError
    from s2s.runtime.server import ServerStartError
    from s2s.video import VideoError

    for error in (ClientError, CheckpointError, EmbeddedTritonNotFoundError, ServerStartError, VideoError, OptionError):
        assert issubclass(error, S2SError), error
    missing = tmp_path / "nothing-here"
    result = subprocess.run([sys.executable, "-m", "s2s", "generate", str(missing), "-o", str(tmp_path / "o.mp4")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and "s2s generate failed: no such file" in result.stderr
    assert "Traceback" not in result.stderr
