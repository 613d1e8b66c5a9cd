"""`s2s dataset`: videos with their sound -> training clips, features from the real server's s2s_features
ensemble; bad files skipped and listed; folder and VGGSound CSV layouts; resumable."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from s2s.bench.reference import ReferencePipeline
from s2s.constants import REGNET
from s2s.errors import OptionError
from s2s.export.specs import ExportOptions
from s2s.export.triton_config import read_preprocess_options
from s2s.motion import MOTION_WIDTH
from s2s.repository import INPUTS_REVISION
from s2s.synth import encode_clip, make_clip, make_still
from s2s.training.dataset import DatasetOptions, build_dataset, clip_paths
from s2s.video import decode_audio
from s2s.windowing import preprocess
from tests.conftest import ADMIN_KEY, SMALL_OVERLAP, SMALL_WINDOW, Serve, export_small_repository

STRIDE_S = (SMALL_WINDOW - SMALL_OVERLAP) / REGNET.fps  # a window every 0.74 s
WINDOW_SAMPLES = round(SMALL_WINDOW / REGNET.fps * REGNET.sample_rate)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = export_small_repository(tmp_path_factory.mktemp("repo"))
    serve = Serve(repo, tmp_path_factory.mktemp("serve"), ["--shm-size", "32M"]).start().wait_ready(timeout_s=300)
    yield serve
    serve.stop()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "admin-key"
    path.write_text(ADMIN_KEY + "\n")
    return path


def _clip_file(path, seed, seconds, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_clip(make_clip(seed, seconds), path, with_audio=True, **kwargs)
    return path


@pytest.fixture(scope="module")
def folder(server, key_file, tmp_path_factory):
    """A folder of good and bad files, and the dataset made of it."""
    tmp_path = tmp_path_factory.mktemp("folder")
    videos = tmp_path / "videos"
    good = _clip_file(videos / "park.mp4", 11, 2.5)  # 54 frames: windows at 0, 16, 32 and a 6-frame tail
    _clip_file(videos / "street" / "bus.webm", 12, 2.0, container="webm")  # Opus sound, in a subfolder
    _clip_file(videos / "kitchen.mkv", 13, 1.0, container="mkv")  # one window
    encode_clip(make_clip(14, 1.5), videos / "silent.mp4")  # no audio track at all
    muted = make_clip(15, 1.5)
    encode_clip(replace(muted, audio=np.zeros_like(muted.audio)), videos / "muted.mp4", with_audio=True)
    (videos / "broken.mp4").write_bytes(good.read_bytes()[:2000])
    (videos / "notes.txt").write_text("not a video")
    (videos / "photo.png").write_bytes(make_still(".png"))
    _clip_file(videos / "blink.mp4", 16, 0.4)  # shorter than --min-seconds
    _clip_file(videos / "long.mp4", 17, 6.0)  # over the server's 5 s limit: the server says so
    options = DatasetOptions(
        source=videos, output=tmp_path / "data", url=server.grpc_url, min_seconds=0.9, test_fraction=0.34,
        admin_key_file=key_file, model_repository=server.repository,
    )  # fmt: skip
    return options, build_dataset(options)


def test_a_folder_of_videos_with_sound_becomes_clips_and_bad_files_are_listed(server, folder):
    options, summary = folder
    good = options.source / "park.mp4"
    reasons = {s["source"]: s["reason"] for s in summary["skipped"]}
    assert set(reasons) == {"silent.mp4", "muted.mp4", "broken.mp4", "notes.txt", "photo.png", "blink.mp4",
                            "long.mp4"}, reasons  # fmt: skip
    assert "no audio track" in reasons["silent.mp4"] and "silent sound track" in reasons["muted.mp4"]
    assert "cannot read" in reasons["broken.mp4"] and "not a video file" in reasons["notes.txt"]
    assert "not a video file" in reasons["photo.png"] and "too short" in reasons["blink.mp4"]
    assert "refused by the server" in reasons["long.mp4"] and "video too long" in reasons["long.mp4"]
    names = sorted(summary["splits"]["train"] + summary["splits"]["test"])
    # clips are named <file>_<start>: in milliseconds, as windows start every 0.74 s here (9.02 s when served)
    assert names == ["kitchen_000000000ms", "park_000000000ms", "park_000000744ms", "park_000001488ms",
                     "street__bus_000000000ms", "street__bus_000000744ms"], names  # fmt: skip
    assert sum(summary["clips"].values()) == 6 and summary["window_frames"] == SMALL_WINDOW
    assert summary["overlap_frames"] == SMALL_OVERLAP and summary["flow_method"] == served_flow(server)
    assert summary["inputs_revision"] == INPUTS_REVISION
    assert summary["encoders"]["tsn_rgb"]["sha256"] and "seed" in summary["encoders"]["tsn_rgb"]["source"]
    assert summary == json.loads((options.output / "dataset.json").read_text())

    # one clip, checked against the serving chain in this process and the file's own sound
    served = read_preprocess_options(server.repository)
    reference = ReferencePipeline.pytorch(ExportOptions(generator_config="small"), served)
    sound = decode_audio(good.read_bytes())
    park = sorted(p for p in (options.output / "clips").glob("park_*.npz"))
    assert len(park) == 3
    for window, path in enumerate(park):
        with np.load(path) as clip:
            assert clip["rgb"].shape == clip["flow"].shape == (SMALL_WINDOW, REGNET.feature_dim)
            assert clip["mel"].shape == (REGNET.n_mels, 4 * SMALL_WINDOW) and clip["rgb"].dtype == np.float16
            start = round(window * STRIDE_S * REGNET.sample_rate)
            np.testing.assert_array_equal(clip["audio"], sound[start : start + WINDOW_SAMPLES])
            assert str(clip["source"]) == "park.mp4" and float(clip["start_s"]) == pytest.approx(window * STRIDE_S)
            windows = preprocess(good.read_bytes(), reference.options, window_start=window, window_count=1)
            for name, frames in (("tsn_rgb", windows.rgb), ("tsn_flow", windows.flow)):
                want = reference.networks[name](frames)[0]
                have = clip["rgb" if name == "tsn_rgb" else "flow"].astype(np.float32)
                cosine = np.sum(want * have, 1) / np.linalg.norm(want, axis=1) / np.linalg.norm(have, axis=1)
                assert cosine.min() > 0.999, (name, cosine.min())
            # the motion statistics as preprocess computes them (the server's float32, no encoder between)
            assert clip["motion"].shape == (SMALL_WINDOW, MOTION_WIDTH) and clip["motion"].any()
            np.testing.assert_allclose(clip["motion"], windows.motion[0], atol=1e-5)

    # splits are per file: both clips of a file are on the same side
    split_of = {n: s for s, ns in summary["splits"].items() for n in ns}
    assert len({split_of[p.stem] for p in park}) == 1
    assert clip_paths(options.output, "train") == [
        options.output / "clips" / f"{n}.npz" for n in summary["splits"]["train"]
    ]

    # a second run does nothing again; a file whose record is gone is done again, alone
    stamps = {p: p.stat().st_mtime_ns for p in (options.output / "clips").iterdir()}
    again = build_dataset(options)
    assert again == summary and {p: p.stat().st_mtime_ns for p in stamps} == stamps
    record = next(p for p in (options.output / "files").iterdir() if "kitchen" in p.read_text())
    record.unlink()
    build_dataset(options)
    changed = [p.stem for p, t in stamps.items() if p.stat().st_mtime_ns != t]
    assert changed == [n for n in names if n.startswith("kitchen")]


def served_flow(server) -> str:
    return read_preprocess_options(server.repository).flow_method


def test_a_dataset_of_inputs_served_before_is_neither_gone_on_with_nor_trained_on(server, folder, tmp_path):
    """A dataset made through a server that computed other generator inputs (s2s.repository.INPUTS_REVISION 1: the
    flow between consecutive 21.5 fps frames): `s2s dataset` adds no clips of today's inputs to it, `s2s train
    --data` does not learn from it; both say to make it again."""
    from s2s.training.train import TrainOptions, train

    options, _ = folder
    records = sorted((options.output / "files").glob("*.json"))
    assert {json.loads(r.read_text())["inputs_revision"] for r in records} == {INPUTS_REVISION}
    old = tmp_path / "old"
    shutil.copytree(options.output, old)
    for path in [old / "dataset.json", *(old / "files").glob("*.json")]:  # as an s2s before the revision wrote them
        record = json.loads(path.read_text())
        del record["inputs_revision"]
        path.write_text(json.dumps(record))
    with pytest.raises(OptionError, match=f"revision 1, the server computes revision {INPUTS_REVISION}.*new --output"):
        build_dataset(replace(options, output=old))
    with pytest.raises(OptionError, match=f"revision 1.* other inputs \\(revision {INPUTS_REVISION}\\)"):
        train(trained := TrainOptions(output=tmp_path / "train", data=old, window_frames=8), stages=("generator",))
    assert not trained.generator_checkpoint().exists()


def test_a_vggsound_csv_and_its_clips(server, key_file, tmp_path):
    clips = tmp_path / "vggsound"
    _clip_file(clips / "abcDEF12345_000030.mp4", 21, 1.0)
    _clip_file(clips / "zyx-9876_5_000004.mp4", 22, 1.0, container="mov")
    table = tmp_path / "vggsound.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["youtube_id", "start_seconds", "label", "split"])
        writer.writerow(["abcDEF12345", "30", "dog barking", "train"])
        writer.writerow(["zyx-9876_5", "4", "door slamming", "test"])
        writer.writerow(["notDownloaded", "10", "rain", "train"])
    options = DatasetOptions(source=table, videos=clips, output=tmp_path / "data", url=server.grpc_url,
                             min_seconds=0.9, admin_key_file=key_file)  # fmt: skip
    summary = build_dataset(options)
    assert summary["splits"] == {"train": ["abcDEF12345_000030000ms"], "test": ["zyx-9876_5_000004000ms"]}
    assert summary["skipped"] == [
        {"source": "notDownloaded_000010", "reason": f"no file notDownloaded_000010.* in {clips}"}
    ]
    with np.load(clip_paths(options.output, "test")[0]) as clip:
        assert str(clip["label"]) == "door slamming" and str(clip["split"]) == "test"
        assert float(clip["start_s"]) == 4.0
    with pytest.raises(OptionError, match="needs --videos"):
        build_dataset(replace(options, videos=None))
    bad = tmp_path / "bad.csv"
    bad.write_text("abc,30,dog,holdout\n")
    with pytest.raises(OptionError, match="split 'holdout'"):
        build_dataset(replace(options, source=bad))


def test_training_on_a_dataset_lowers_the_loss_and_the_checkpoint_exports_and_serves(server, folder, tmp_path):
    """s2s train --data: the generator and vocoder learn from the dataset's train split; the generator records
    the served encoders' fingerprints, so the export pairs it with them; the result serves."""
    from s2s.client.generate import probe_duration
    from s2s.client.triton import S2SClient
    from s2s.export.onnx_export import export_repository
    from s2s.export.triton_config import ServingOptions
    from s2s.models.regnet import load_regnet_checkpoint
    from s2s.training.evaluate import EvalOptions, evaluate, report
    from s2s.training.train import TrainOptions, encoder_exports, encoder_fingerprints, train

    dataset, summary = folder[0].output, folder[1]
    options = TrainOptions(output=tmp_path / "train", data=dataset, window_frames=8, batch=2, generator_steps=50,
                           vocoder_steps=4, checkpoint_every=25, vocoder_segment_frames=8)  # fmt: skip
    result = train(options, stages=("data", "generator", "vocoder"))
    assert result["data"] == [str(p) for p in clip_paths(dataset, "train")] and len(result["data"]) == len(
        summary["splits"]["train"]
    )
    losses = json.loads((options.output / "losses.json").read_text())["generator"]
    assert [s for s, _ in losses] == [25, 50] and losses[1][1] < losses[0][1], losses
    _, meta = load_regnet_checkpoint(result["generator"])
    assert meta["s2s_encoders"] == encoder_fingerprints(encoder_exports(TrainOptions()))  # the served, seeded ones
    assert meta["s2s_training"]["clips"] == len(result["data"]) and "dataset" in meta["s2s_training"]
    assert meta["s2s_training"]["inputs_revision"] == INPUTS_REVISION  # what it learnt from, and will be served
    repo = tmp_path / "repo"
    export = ExportOptions(generator_config="small", generator_checkpoint=Path(result["generator"]),
                           vocoder_checkpoint=Path(result["vocoder"]))  # fmt: skip
    export_repository(repo, export, ServingOptions(warmup_frames=0, cpu_precision="fp32"), None, None,
                      replace(read_preprocess_options(server.repository), z_dim=0))  # fmt: skip
    serve = Serve(repo, tmp_path, ["--shm-size", "32M"]).start().wait_ready(timeout_s=300)
    try:
        with S2SClient(serve.grpc_url) as client:
            video = (folder[0].source / "park.mp4").read_bytes()
            out = client.generate(video)
        assert out.waveform.size == round(probe_duration(video) * REGNET.sample_rate) and np.abs(out.waveform).max() > 0
    finally:
        serve.stop()

    # s2s eval --data: the test split's stored features through the served generator and vocoder, scored
    # against each clip's own sound (its detected onsets as the truth), trained vs untrained
    results = evaluate(EvalOptions(output=tmp_path / "eval", data=dataset, window_frames=SMALL_WINDOW,
                                   generator_checkpoint=Path(result["generator"]),
                                   vocoder_checkpoint=Path(result["vocoder"])))  # fmt: skip
    names = summary["splits"]["test"]
    for label in ("trained", "untrained", "vocoded"):
        rows = results[label]["clips"]
        assert [r["seed"] for r in rows] == names and all(0 <= r["accuracy"] <= 1 for r in rows)
        assert all(np.isfinite(r["mel_distance_db"]) and r["mel_distance_db"] > 0 for r in rows)
    assert results["vocoded"]["summary"]["mel_distance_db"] < results["untrained"]["summary"]["mel_distance_db"]
    assert results["pictures"] == [f"spectrograms/seed_{n}.png" for n in names]
    assert all((tmp_path / "eval" / p).is_file() for p in results["pictures"])
    assert report(results).startswith(f"Scores on the {len(names)} test clips of the dataset")
    assert results["inputs_revision"] == INPUTS_REVISION and f"(inputs' revision {INPUTS_REVISION})" in report(results)
    # a dataset of inputs served before (a legitimate before / after) is scored, and the report says so
    older = report({**results, "inputs_revision": INPUTS_REVISION - 1})
    assert f"revision {INPUTS_REVISION - 1}: this version serves revision {INPUTS_REVISION}" in older
