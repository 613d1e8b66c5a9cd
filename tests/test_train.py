"""`s2s train` on a tiny budget (what it writes, resuming, the float16 install), the export's check that a
generator is paired with its encoders, and `s2s eval` end to end through the real Triton ensemble."""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from s2s.constants import REGNET
from s2s.errors import OptionError
from s2s.export.specs import ExportOptions, build_exports
from s2s.independent import INDEPENDENT_SEEDS
from s2s.models.checkpoints import CheckpointError, file_sha256
from s2s.models.melgan import build_melgan
from s2s.models.regnet import build_regnet, load_regnet_checkpoint
from s2s.motion import MOTION_WIDTH
from s2s.synth import HELD_OUT_SEEDS
from s2s.training.adversarial import (
    MelDiscriminator,
    MultiScaleDiscriminator,
    PeriodDiscriminator,
    VocoderDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from s2s.training.train import (
    ClipData,
    MissingStageError,
    ResumeError,
    TrainOptions,
    hop_periodic_loss,
    install_demo_weights,
    predicted_mels,
    train,
)
from s2s.weights import DEMO_VOCODER

TINY = dict(clips=2, clip_seconds=2.0, window_frames=8, batch=2, generator_steps=6, vocoder_steps=4,
            vocoder_adversarial_steps=2, periodic_weight=1.0, checkpoint_every=3, vocoder_segment_frames=8,
            variety="wide")  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    options = TrainOptions(output=tmp_path_factory.mktemp("train"), **TINY)
    return options, train(options)


def test_training_writes_reference_layout_checkpoints_and_loss_curves(trained):
    options, result = trained
    generator = build_regnet(checkpoint=result["generator"])  # strict load of the reference layout
    assert generator.config.random_z_dim == 64  # the "small" configuration, stored in the file
    _, meta = load_regnet_checkpoint(result["generator"])
    # fed RegNet's inputs (the default): paired with both encoders
    assert meta["iteration"] == 6 and set(meta["s2s_encoders"]) == {"tsn_rgb", "tsn_flow"}
    assert generator.config.inputs == ("rgb", "flow") and generator.config.visual_dim == 2 * REGNET.feature_dim
    assert meta["s2s_training"]["first_seed"] + meta["s2s_training"]["clips"] <= HELD_OUT_SEEDS.start
    build_melgan(checkpoint=result["vocoder"])  # official best_netG layout (weight norm g/v), strict
    losses = json.loads((options.output / "losses.json").read_text())
    assert [s for s, _ in losses["generator"]] == [6] and all(v > 0 for _, v in losses["generator"])
    assert [s for s, _ in losses["vocoder"]] == [6], "spectral steps, then those with the discriminator"
    state = torch.load(options.output / "vocoder" / "resume.pt", weights_only=False)
    # the adversarial steps have an optimiser of their own, next to the spectral steps' and the discriminator's
    assert set(state["parts"]) == {"vocoder", "vocoder_adversarial", "discriminator"} and state["step"] == 6
    spectral, adversarial = (state["parts"][k]["scheduler"]["last_epoch"] for k in ("vocoder", "vocoder_adversarial"))
    assert (spectral, adversarial) == (4, 2)
    assert "model" in state["parts"]["vocoder"] and "model" not in state["parts"]["vocoder_adversarial"], "saved once"
    assert (options.output / "losses.png").stat().st_size > 1000
    assert len(result["data"]) == 2 and all(Path(p).name.startswith("clip_wide_") for p in result["data"])
    assert meta["s2s_training"]["variety"] == "wide"
    with np.load(result["data"][0]) as data:  # wide clips at their own frame rate, decoded at 21.5 fps as served
        assert data["rgb"].shape[0] == math.ceil(2.0 * REGNET.fps) and data["mel"].shape[1] == 4 * data["rgb"].shape[0]
        assert data["motion"].shape == (data["rgb"].shape[0], MOTION_WIDTH) and data["motion"].any()
        made = {k: data[k] for k in data.files}
    # a decoded clip cached before its flow was measured over one recipe period (s2s.video.Track) is made again
    stale = {k: v for k, v in made.items() if k != "flow_per_period"}
    np.savez(result["data"][0], **{**stale, "flow": np.zeros_like(made["flow"])})
    train(options, stages=("data",))
    with np.load(result["data"][0]) as again:
        assert again["flow_per_period"] and again["flow"].any()
        np.testing.assert_array_equal(again["flow"], made["flow"])


def test_a_generator_fed_motion_records_its_inputs_and_pairs_with_the_flow_encoder_alone(trained, tmp_path):
    options, result = trained
    (export,) = build_exports(ExportOptions(generator_checkpoint=result["generator"]), ("generator",))
    assert [t.name for t in export.inputs] == ["rgb_features", "flow_features", "frame_index", "z"]
    assert export.extra["inputs"] == ["rgb", "flow"]
    # the motion statistics and the flow features, on the same clips (the data stage's clips hold every input)
    output = tmp_path / "motion"
    shutil.copytree(options.output / "data", output / "data")
    shutil.copy(options.output / "encoders.json", output / "encoders.json")
    motion = replace(options, output=output, generator_inputs="motion,flow", generator_steps=3)
    checkpoint = train(motion, stages=("generator",))["generator"]
    _, meta = load_regnet_checkpoint(checkpoint)
    generator = build_regnet(checkpoint=checkpoint)
    assert generator.config.inputs == ("motion", "flow")
    assert generator.config.visual_dim == MOTION_WIDTH + REGNET.feature_dim
    assert set(meta["s2s_encoders"]) == {"tsn_flow"}, "the RGB encoder's weights do not matter to it"
    (export,) = build_exports(ExportOptions(generator_checkpoint=checkpoint), ("generator",))
    assert [t.name for t in export.inputs] == ["motion", "flow_features", "frame_index", "z"]
    assert export.extra["inputs"] == ["motion", "flow"]
    rgb, flow = build_exports(ExportOptions(generator_checkpoint=checkpoint), ("tsn_rgb", "tsn_flow"))
    assert flow.warning is None and "trained_generator" in flow.source, "paired: not noise"
    # not fed to the generator (it serves s2s_features): not noise either, and said so
    assert rgb.warning is None and "not_fed_to_generator" in rgb.source and "trained_generator" not in rgb.source
    # clips cached before the data stage stored the motion statistics: said, not trained on
    stale = tmp_path / "stale"
    (stale / "data").mkdir(parents=True)
    for path in (output / "data").glob("*.npz"):
        with np.load(path) as clip:
            np.savez(stale / "data" / path.name, **{k: clip[k] for k in clip.files if k != "motion"})
    with pytest.raises(MissingStageError, match="--generator-inputs motion,flow"):
        train(replace(motion, output=stale), stages=("generator",))
    train(replace(options, output=stale, generator_steps=3), stages=("generator",))  # RegNet's need no motion
    with pytest.raises(OptionError, match="generator inputs motion,motion"):
        TrainOptions(generator_inputs="motion,motion")


def test_an_adversarial_loss_on_the_mels_trains_a_discriminator_beside_the_generator(trained, tmp_path, caplog):
    options, _ = trained
    runs = {}
    for weight in (0.0, 0.5):
        output = tmp_path / f"w{weight:g}"
        shutil.copytree(options.output / "data", output / "data")
        shutil.copy(options.output / "encoders.json", output / "encoders.json")
        run = replace(options, output=output, generator_steps=3, generator_adversarial_weight=weight)
        runs[weight] = (run, train(run, stages=("generator",))["generator"])
    plain, adversarial = (load_regnet_checkpoint(runs[w][1]) for w in (0.0, 0.5))
    assert adversarial[1]["s2s_training"]["generator_adversarial_weight"] == 0.5
    assert "generator_adversarial_weight" not in plain[1]["s2s_training"]
    # the same seed, windows and first weights: only the adversarial term tells the two generators apart
    assert any(not torch.equal(plain[0][k], adversarial[0][k]) for k in plain[0])
    run, _ = runs[0.5]
    state = torch.load(run.output / "generator" / "resume.pt", weights_only=False)
    assert set(state["parts"]) == {"generator", "mel_discriminator"}
    assert all("model" in part and part["scheduler"]["last_epoch"] == 3 for part in state["parts"].values())
    with caplog.at_level(logging.INFO, logger="s2s.training.train"):
        longer = train(replace(run, generator_steps=5), stages=("generator",))["generator"]
    assert "generator: resuming at step 3" in caplog.text
    state = torch.load(run.output / "generator" / "resume.pt", weights_only=False)
    assert state["parts"]["mel_discriminator"]["scheduler"]["last_epoch"] == 5, "the discriminator resumed too"
    assert load_regnet_checkpoint(longer)[1]["iteration"] == 5
    with pytest.raises(OptionError, match="--generator-adversarial-weight"):
        TrainOptions(generator_adversarial_weight=-0.1)


def test_the_mel_discriminator_scores_each_mel_frame_in_the_light_of_the_features():
    torch.manual_seed(0)
    critic = MelDiscriminator(visual_dim=12)
    mel, features = torch.rand(2, 80, 40), torch.randn(2, 10, 12)
    (scale,) = critic(mel, features)
    assert scale[-1].shape == (2, 1, 40), "a score per mel frame"
    # the same mel beside other features scores otherwise: it judges the sound against what the picture shows
    assert not torch.allclose(scale[-1], critic(mel, torch.randn(2, 10, 12))[0][-1])
    ones, zeros = [[torch.ones(2, 1, 40)]], [[torch.zeros(2, 1, 40)]]
    assert discriminator_loss(ones, zeros) == 0 and generator_adversarial_loss(ones) == 0


def test_training_resumes_where_it_stopped(trained, caplog):
    options, _ = trained
    data = sorted((options.output / "data").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in data]
    longer = replace(options, generator_steps=9)
    with caplog.at_level(logging.INFO, logger="s2s.training.train"):
        result = train(longer, stages=("data", "generator"))
    assert "generator: resuming at step 6" in caplog.text
    assert [p.stat().st_mtime_ns for p in data] == stamps, "cached clip features were recomputed"
    assert load_regnet_checkpoint(result["generator"])[1]["iteration"] == 9


def test_the_hop_periodic_loss_sees_a_waveform_repeated_every_hop():
    rng = np.random.default_rng(0)
    target = torch.from_numpy(0.01 * rng.standard_normal((2, 32 * 256))).float()
    buzz = torch.from_numpy(np.tile(0.005 * rng.standard_normal(256), 32)).float()[None]
    other = torch.from_numpy(0.005 * rng.standard_normal((2, 32 * 256))).float()  # as loud, not periodic
    assert hop_periodic_loss(target, target) == 0
    periodic, aperiodic = hop_periodic_loss(target + buzz, target), hop_periodic_loss(target + other, target)
    assert periodic > 0.3 and aperiodic < 0.5 * periodic, (periodic, aperiodic)


def test_the_multi_scale_discriminator_scores_three_scales_and_its_losses_have_their_optima():
    discriminator = MultiScaleDiscriminator()
    out = discriminator(torch.randn(2, 1, 4096))
    assert len(out) == 3 and all(len(scale) == 7 for scale in out)
    assert [scale[-1].shape[-1] for scale in out] == [16, 8, 4]  # scores at 1/256 of each scale's rate
    real = [[torch.ones(2, 1, 4)] * 2 for _ in range(3)]
    fake = [[torch.zeros(2, 1, 4)] * 2 for _ in range(3)]
    assert discriminator_loss(real, fake) == 0 and generator_adversarial_loss(real) == 0
    assert generator_adversarial_loss(fake) == 1 and feature_matching_loss(real, real) == 0
    assert feature_matching_loss(real, fake) == 1


def test_the_hop_period_discriminator_looks_down_each_phase_of_the_hop():
    hop = REGNET.hop_length
    discriminator = PeriodDiscriminator(hop)
    phase = torch.randn(1, 1, hop)
    repeated = discriminator(phase.repeat(1, 1, 40))  # one waveform every hop: a constant down each column
    first = repeated[0][0]  # (B, C, rows, hop)
    assert first.shape[-2:] == (14, hop)
    inner = first[..., 1:-1, :]  # away from the zero padding at both ends of each column
    assert torch.allclose(inner, inner[..., :1, :].expand_as(inner), atol=1e-5)
    noisy = discriminator(torch.randn(1, 1, 40 * hop))[0][0][..., 1:-1, :]
    assert (noisy - noisy.mean(-2, keepdim=True)).abs().mean() > 0.1 * noisy.abs().mean()
    assert discriminator(torch.randn(2, 1, 40 * hop - 7))[-1].shape[:2] == (2, 1)  # padded to whole rows
    both = VocoderDiscriminator(hop)(torch.randn(2, 1, 4096))
    assert len(both) == 4, "three scales and the hop period"


def test_stages_left_out_do_not_run_and_use_what_an_earlier_run_left(trained):
    options, _ = trained
    data = sorted((options.output / "data").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in data]
    result = train(replace(options, vocoder_steps=6), stages=("vocoder",))  # no data stage: the cached clips
    assert [p.stat().st_mtime_ns for p in data] == stamps and "generator" not in result
    assert result["stages"] == ["vocoder"] and Path(result["vocoder"]).is_file()


def test_a_resume_file_with_another_discriminator_is_refused_with_the_reason(trained, tmp_path):
    options, _ = trained
    other = replace(options, output=tmp_path / "other")
    (other.output / "vocoder").mkdir(parents=True)
    for name in ("data", "encoders.json"):  # the first run's cached clips and the record of their encoders
        (other.output / name).symlink_to(options.output / name)
    state = torch.load(options.output / "vocoder" / "resume.pt", weights_only=False)
    state["parts"]["discriminator"]["model"] = MultiScaleDiscriminator().state_dict()  # an earlier version's
    torch.save(state, other.output / "vocoder" / "resume.pt")
    with pytest.raises(ResumeError, match=r"its discriminator does not fit this version's .*Missing key"):
        train(other, stages=("vocoder",))


def test_the_vocoder_can_learn_from_the_generator_s_predicted_mels(trained, tmp_path):
    options, _ = trained
    with pytest.raises(OptionError, match="share of the segments"):
        TrainOptions(predicted_mels=1.5, vocoder_adversarial_steps=2)
    with pytest.raises(OptionError, match="adversarial vocoder steps"):
        TrainOptions(predicted_mels=0.5, vocoder_adversarial_steps=0)
    TrainOptions(predicted_mels=0.5, vocoder_adversarial_steps=0, vocoder_finetune_steps=10)  # or fine-tune ones
    other = replace(options, output=tmp_path / "other", predicted_mels=1.0)
    other.output.mkdir()
    for name in ("data", "encoders.json"):
        (other.output / name).symlink_to(options.output / name)
    data = ClipData(sorted((other.output / "data").glob("*.npz")), other.inputs)
    with pytest.raises(MissingStageError, match="run the generator stage"):
        predicted_mels(other, data)
    (other.output / "generator").symlink_to(options.output / "generator")
    predicted = predicted_mels(other, data)
    assert len(predicted) == 2 and np.array_equal(predicted[0], predicted_mels(other, data)[0]), "seeded noise"
    for mel, (_, own, _) in zip(predicted, data.clips, strict=True):
        assert mel.shape == own.shape and mel.min() >= 0 and mel.max() <= 1 and not np.allclose(mel, own)
    # the share of segments whose mel is the prediction: all, none
    marks = [np.full_like(own, 0.25 + i / 10) for i, (_, own, _) in enumerate(data.clips)]
    rng = random.Random(0)
    mels, _ = data.segments(rng, 6, 8, marks, share=1.0)
    assert all(round(float(m[0, 0]), 2) in (0.25, 0.35) and float(m.max() - m.min()) == 0 for m in mels)
    mels, _ = data.segments(rng, 6, 8, marks, share=0.0)
    assert all(float(m.std()) > 0 for m in mels), "the clips' own mels"
    result = train(other, stages=("vocoder",))
    build_melgan(checkpoint=result["vocoder"])
    assert json.loads((other.output / "options.json").read_text())["predicted_mels"] == 1.0


def test_the_istft_vocoder_trains_in_the_vocoder_stage_and_its_checkpoint_names_it(trained, tmp_path):
    from s2s.models.istft import build_istft_vocoder
    from s2s.training.train import SPECTRAL_RECIPES

    options, _ = trained
    assert TrainOptions(vocoder="istft").spectral_steps == SPECTRAL_RECIPES["istft"].steps
    assert TrainOptions().spectral_steps == SPECTRAL_RECIPES["melgan"].steps, "the shipped recipe stays the default"
    with pytest.raises(OptionError, match="s2s train makes melgan, istft"):
        TrainOptions(vocoder="wavenet")
    other = replace(options, output=tmp_path / "other", vocoder="istft", vocoder_adversarial_steps=0)
    other.output.mkdir()
    for name in ("data", "encoders.json", "generator"):
        (other.output / name).symlink_to(options.output / name)
    result = train(other, stages=("vocoder",))
    first = torch.load(result["vocoder"], weights_only=True)["state_dict"]
    # the finished run given fine-tune steps on the generator's mels continues from where it ended
    finetuned = replace(other, vocoder_finetune_steps=2, predicted_mels=1.0)
    assert train(finetuned, stages=("vocoder",))["vocoder"] == result["vocoder"]
    state = torch.load(other.output / "vocoder" / "resume.pt", weights_only=False)
    assert state["step"] == 6 and set(state["parts"]) == {"vocoder", "vocoder_finetune"}
    after = torch.load(result["vocoder"], weights_only=True)["state_dict"]
    assert not torch.equal(first["head.weight"], after["head.weight"]), "it learnt on"
    assert torch.equal(first["noise_table"], after["noise_table"]), "the served noise is not learnt"
    assert torch.load(result["vocoder"], weights_only=True)["architecture"] == "istft"
    vocoder = build_istft_vocoder(checkpoint=result["vocoder"])
    mel = ClipData([sorted((other.output / "data").glob("*.npz"))[0]], other.inputs).clips[0][1][None, :, :40]
    with torch.no_grad():
        sound = vocoder(torch.from_numpy(mel))
    assert sound.shape == (1, 1, 40 * 256) and torch.isfinite(sound).all() and sound.abs().max() > 0
    losses = json.loads((other.output / "losses.json").read_text())["vocoder"]
    assert [s for s, _ in losses] == [4, 6] and all(np.isfinite(v) for _, v in losses)
    assert ExportOptions(vocoder_checkpoint=Path(result["vocoder"])).vocoder_name() == "istft"
    assert ExportOptions(vocoder_checkpoint=Path(trained[1]["vocoder"])).vocoder_name() == "melgan"


def test_a_stage_without_its_data_says_which_stage_to_run(tmp_path):
    with pytest.raises(MissingStageError, match="run the data stage first"):
        train(TrainOptions(output=tmp_path, **TINY), stages=("generator",))
    assert not (tmp_path / "data").exists() and not (tmp_path / "generator").exists()


def test_an_unknown_stage_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(OptionError, match=r"unknown stage\(s\) \['vocodr'\]; the stages are data, generator, vocoder"):
        train(TrainOptions(output=tmp_path / "out", **TINY), stages=("data", "vocodr"))
    assert not (tmp_path / "out").exists()


def test_install_uses_the_final_checkpoints_of_earlier_runs(trained, tmp_path):
    options, _ = trained
    result = train(options, stages=("data",), install_to=tmp_path / "weights")  # no generator stage in this run
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == sorted(Path(p).name for p in result["installed"])
    with pytest.raises(MissingStageError, match=r"missing: generator \(.*checkpoint_000999_netG\)"):
        train(replace(options, generator_steps=999), stages=("data",), install_to=tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_training_refuses_held_out_seeds(tmp_path):
    with pytest.raises(ValueError, match="held out"):
        train(TrainOptions(output=tmp_path, first_seed=HELD_OUT_SEEDS.start - 1, **{**TINY, "clips": 2}))


def test_float16_install_loads_back_close_to_the_trained_weights(trained, tmp_path):
    _, result = trained
    gen16, voc16 = install_demo_weights(result["generator"], result["vocoder"], tmp_path)
    width = build_regnet(checkpoint=result["generator"]).config.visual_dim
    features, z, mel = torch.randn(1, 8, width), torch.randn(1, 64), torch.rand(1, 80, 16)
    with torch.no_grad():
        a, b = build_regnet(checkpoint=result["generator"])(features, z), build_regnet(checkpoint=gen16)(features, z)
        assert (a - b).abs().max() / a.abs().max() < 1e-2
        c, d = build_melgan(checkpoint=result["vocoder"])(mel), build_melgan(checkpoint=voc16)(mel)
        assert (c - d).abs().max() / c.abs().max() < 2e-2
    assert gen16.stat().st_size < 0.6 * Path(result["generator"]).stat().st_size  # float16: half the size
    assert voc16.stat().st_size < 0.6 * Path(result["vocoder"]).stat().st_size


def test_export_refuses_a_generator_trained_on_other_encoders(trained):
    _, result = trained
    exports = build_exports(ExportOptions(generator_checkpoint=result["generator"]), ("tsn_rgb", "tsn_flow"))
    assert all(e.warning is None and "trained_generator" in e.source for e in exports), "paired: not noise"
    build_exports(ExportOptions(generator_checkpoint=result["generator"]), ("generator",))  # checks without them
    with pytest.raises(CheckpointError, match=r"trained on other tsn_(rgb|flow) weights"):
        build_exports(ExportOptions(generator_checkpoint=result["generator"], seed=5), ("generator",))


def test_eval_scores_trained_and_untrained_weights_through_triton(trained, tmp_path):
    from s2s.training.evaluate import EvalOptions, evaluate, report

    _, result = trained
    with pytest.raises(OptionError, match="longer than a window"):
        EvalOptions(long_clips=1, long_clip_seconds=0.5, window_frames=20)
    options = EvalOptions(output=tmp_path / "eval", clips=1, clip_seconds=2.0, long_clips=1, long_clip_seconds=3.0,
                          window_frames=20, overlap_frames=4, generator_checkpoint=result["generator"],
                          vocoder_checkpoint=result["vocoder"], variety="wide", independent_clips=1,
                          baseline_vocoder_checkpoint=DEMO_VOCODER)  # fmt: skip
    results = evaluate(options)
    # before / after in one run: the baseline keeps the trained generator and swaps in the other vocoder
    baseline, trained_weights = results["weights"]["baseline"], results["weights"]["trained"]
    assert baseline["generator"]["sha256"] == trained_weights["generator"]["sha256"]
    assert baseline["vocoder"]["sha256"] == file_sha256(DEMO_VOCODER) != trained_weights["vocoder"]["sha256"]
    assert len(results["baseline"]["clips"]) == 3 and len(results["baseline-vocoded"]["clips"]) == 3
    assert results["baseline-vocoded"]["summary"]["buzz_db"] != results["vocoded"]["summary"]["buzz_db"]
    assert "| baseline (" in report(results) and "| baseline vocoder on the true mel (its ceiling) |" in report(results)
    trained_generator = results["weights"]["trained"]["generator"]
    assert trained_generator["checkpoint"] == Path(result["generator"]).name  # outside the project: its name
    assert trained_generator["sha256"] == file_sha256(result["generator"])
    assert "seed" in results["weights"]["untrained"]["generator"]
    for label in ("trained", "untrained"):
        row, long, other = results[label]["clips"]
        # the independent set's clip is scored apart: the summary is of the generated clips
        assert (row["set"], long["set"], other["set"]) == ("generated", "generated", "independent")
        assert results[label]["summary"]["clips"] == 2 and results[label]["independent"]["clips"] == 1
        assert set(other["kinds"]) <= {"topple", "knock", "rebound"} and other["truth"] > 0
        assert row["seed"] == HELD_OUT_SEEDS.start and row["truth"] > 0 and long["seed"] == HELD_OUT_SEEDS.start + 1
        # windows of 20 frames every 16 (0.74 s): 2 seams in the 2 s clip, 3 in the 3 s one
        assert (row["seams"], long["seams"]) == (2, 3) and results[label]["summary"]["seams"] == 5
        assert all(isinstance(r["steady_steps_db"], list) for r in (row, long))
        # the level step across each seam with 0.2 s of sound on both sides
        assert len(row["seam_steps_db"]) >= 1 and len(long["seam_steps_db"]) >= 2
        assert all(step >= 0 and math.isfinite(step) for step in row["seam_steps_db"] + long["seam_steps_db"])
        assert math.isfinite(results[label]["summary"]["seam_step_db"])
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["ap"] <= 1 and -1 <= row["envelope_correlation"] <= 1
        assert 0 <= row["chance_accuracy"] <= 1 and 0 <= results[label]["independent"]["chance_accuracy"] <= 1
    reference, _, other = results["reference"]["clips"]  # the clip's own sound, scored the same way
    assert other["accuracy"] >= 0.5 and results["reference"]["independent"]["accuracy"] == other["accuracy"]
    assert "Generalisation: 1 clips of the independent held-out set" in report(results)
    assert "| onset accuracy | by chance |" in report(results) and "| by chance, independent |" in report(results)
    assert "| reference (the clips' own sound) | " in report(results).split("Generalisation")[1]
    assert reference["truth"] == row["truth"] and reference["accuracy"] >= 0.5
    # how it sounds: the generated sound is some distance from the clip's own; the served vocoder fed the
    # clip's true mel (the ceiling) is scored too
    vocoded, _, _ = results["vocoded"]["clips"]
    assert reference["mel_distance_db"] == 0.0 and results["trained"]["clips"][0]["mel_distance_db"] > 0
    assert all(math.isfinite(r[k]) for r in (row, reference, vocoded) for k in ("buzz_db", "mel_distance_db"))
    # level-matched: the own sound is 0 off either way; another sound is no further off once levels match
    assert reference["matched_mel_distance_db"] == 0.0
    assert 0 < row["matched_mel_distance_db"] <= row["mel_distance_db"] + 1e-6
    assert "| level-matched, independent (dB) |" in report(results)
    assert all(r["seam_onsets"] >= 0 for r in (row, reference, vocoded))
    # the impacts' ringing: none lost by the own sound; a summary is the mean over the clips
    assert reference["ringing_lost_db"] == 0.0 and results["reference"]["summary"]["ringing_lost_db"] == 0.0
    assert math.isfinite(vocoded["ringing_lost_db"]) and "| ringing lost (dB) |" in report(results)
    lost = [r["ringing_lost_db"] for r in results["trained"]["clips"][:2] if r["ringing_lost_db"] is not None]
    assert results["trained"]["summary"]["ringing_lost_db"] == pytest.approx(np.mean(lost))
    assert "true mel (ceiling)" in report(results) and "hop-rate buzz" in report(results)
    assert "| trained (" in report(results) and "own sound" in report(results)
    assert "level step at seams (dB)" in report(results) and "away from seams" in report(results)
    # a picture per clip: the generated sound's mel, the clip's own and the vocoded true mel, one above the other
    assert results["pictures"][:2] == [f"spectrograms/seed_{HELD_OUT_SEEDS.start + i}.png" for i in range(2)]
    assert results["pictures"][2] == f"spectrograms/seed_{INDEPENDENT_SEEDS.start}.png"
    assert all(f"![{name}]({name})" in report(results) for name in results["pictures"])
    picture = cv2.imread(str(options.output / results["pictures"][1]))
    mel_frames = 3.0 * REGNET.sample_rate / REGNET.hop_length
    assert picture.shape[0] == 3 * 2 * REGNET.n_mels + 2 * 2 and abs(picture.shape[1] - mel_frames) <= 3
    own = picture[2 * REGNET.n_mels + 2 : 4 * REGNET.n_mels + 2]
    assert own.std() > 5 and not np.array_equal(own, picture[: 2 * REGNET.n_mels])
    if results["precision"] != "fp32":  # the reduced precision is scored against fp32 too
        assert "| trained (fp32) |" in report(results) and len(results["trained-fp32"]["clips"]) == 3
    assert (tmp_path / "eval" / "eval.json").exists()
