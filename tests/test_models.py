"""The networks against the reference numbers, and checkpoint import in the official layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s2s.audio import MelSpectrogram, mel_spectrogram_librosa
from s2s.constants import REGNET
from s2s.models.bninception import RGB_PARAMETERS, BNInception, build_bninception
from s2s.models.checkpoints import CheckpointError, count_parameters
from s2s.models.hifigan import PAPER_PARAMETERS_M, VARIANTS, build_hifigan, hifigan_checkpoint
from s2s.models.istft import InverseSTFT, build_istft_vocoder, istft_checkpoint
from s2s.models.melgan import build_melgan, melgan_checkpoint_state
from s2s.models.regnet import RegNetGenerator, build_regnet, regnet_config, save_regnet_checkpoint
from s2s.windowing import PreprocessOptions


# ----------------------------------------------------------------------------------------- constants
def test_recipe_counts_are_derived():
    assert REGNET.frames_per_window == 215
    assert REGNET.mel_frames_per_window == 860
    assert REGNET.samples_per_window == 860 * 256
    assert REGNET.visual_dim == 2048


# ------------------------------------------------------------------------------------------------ mel
def test_mel_module_matches_librosa_reference():
    rng = np.random.default_rng(0)
    t = np.arange(REGNET.sample_rate) / REGNET.sample_rate
    wav = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32)
    ours = MelSpectrogram()(torch.from_numpy(wav)[None])[0].numpy()
    ref = mel_spectrogram_librosa(wav)
    assert ours.shape == ref.shape == (80, 1 + wav.size // 256)
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    assert ours.min() >= 0.0 and ours.max() <= 1.0


def test_mel_of_a_tone_peaks_in_its_band():
    t = np.arange(REGNET.sample_rate) / REGNET.sample_rate
    low = mel_spectrogram_librosa(np.sin(2 * np.pi * 300 * t)).mean(axis=1).argmax()
    high = mel_spectrogram_librosa(np.sin(2 * np.pi * 3000 * t)).mean(axis=1).argmax()
    assert low < high
    silence = mel_spectrogram_librosa(np.zeros(REGNET.sample_rate))
    assert silence.max() == 0.0  # 20*log10(1e-5) - 20 = -120 dB, clipped to 0


# -------------------------------------------------------------------------------------- BN-Inception
def test_bninception_matches_reference_size():
    rgb, flow = build_bninception(3), build_bninception(2)
    assert count_parameters(rgb) == RGB_PARAMETERS == 10_270_240
    assert count_parameters(rgb) - count_parameters(flow) == 64 * 7 * 7  # conv1: 3 -> 2 input channels
    assert rgb.num_convs == 69
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in rgb.modules()) == 69
    with torch.no_grad():
        assert rgb(torch.zeros(2, 3, 224, 224)).shape == (2, 1024)


def _imagenet_state(seed: int = 5) -> dict:
    """A state dict in the ImageNet file's layout: classifier `fc`, no BN counters, random values."""
    g = torch.Generator().manual_seed(seed)
    state = {
        k: (torch.rand(v.shape, generator=g) + 0.5 if "running_var" in k else torch.randn(v.shape, generator=g) * 0.05)
        for k, v in BNInception().state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 1024, generator=g), torch.zeros(1000)
    return state


def test_bninception_imports_imagenet_checkpoint(tmp_path):
    state = _imagenet_state()
    path = tmp_path / "bn_inception-9f5701afb96c8044.pth"
    torch.save(state, path)
    rgb = build_bninception(3, path)
    torch.testing.assert_close(rgb.conv1_7x7_s2.weight, state["conv1_7x7_s2.weight"])
    torch.testing.assert_close(
        rgb.inception_5b_pool_proj_bn.running_var, state["inception_5b_pool_proj_bn.running_var"]
    )
    flow = build_bninception(2, path)
    torch.testing.assert_close(
        flow.conv1_7x7_s2.weight[:, 0], state["conv1_7x7_s2.weight"].mean(dim=1), msg="flow conv1 = mean of RGB conv1"
    )
    assert flow.conv1_7x7_s2.weight.shape[1] == 2


def test_bninception_checkpoint_errors_name_the_keys(tmp_path):
    state = _imagenet_state()
    del state["inception_4c_3x3_bn.running_mean"]
    state["extra_layer.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        build_bninception(3, tmp_path / "bad.pth")
    assert "missing keys: inception_4c_3x3_bn.running_mean" in str(info.value)
    assert "unexpected keys: extra_layer.weight" in str(info.value)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        build_bninception(3, tmp_path / "garbage.pth")


# ------------------------------------------------------------------------------------------- RegNet
def test_regnet_reference_size_and_shapes():
    model = build_regnet("reference")
    assert abs(count_parameters(model) / 1e6 - 94.1) < 0.05  # 94,095,184
    with torch.no_grad():
        for frames in (5, REGNET.frames_per_window):
            mel = model(torch.randn(2, frames, 2048), torch.randn(2, 512))
            assert mel.shape == (2, 80, REGNET.mel_frames(frames))


def test_regnet_auxiliary_branch_is_zeroed():
    model = build_regnet("small", seed=3)
    x, z = torch.randn(1, 6, 2048), torch.randn(1, 64)
    with torch.no_grad():
        before = model(x, z)
        for p in model.auxiliary.parameters():
            p.add_(1.0)
        after = model(x, z)
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_regnet_noise_changes_the_output():
    model = build_regnet("small", seed=3)
    x = torch.randn(1, 6, 2048)
    with torch.no_grad():
        assert not torch.allclose(model(x, torch.zeros(1, 64)), model(x, torch.ones(1, 64)))


def test_unknown_regnet_config_is_a_value_error():
    with pytest.raises(ValueError, match="unknown RegNet configuration 'huge'"):
        regnet_config("huge")


def test_regnet_reference_layout_checkpoint_round_trip(tmp_path):
    original = build_regnet("reference", seed=11)
    path = tmp_path / "checkpoint_041000_netG"
    torch.save({"iteration": 41000, "learning_rate": 2e-4, "optimizer_netG": original.state_dict()}, path)
    loaded = build_regnet("reference", path)
    x, z = torch.randn(1, 4, 2048), torch.randn(1, 512)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, z), original(x, z))


def test_regnet_checkpoint_carries_its_config(tmp_path):
    original = build_regnet("small", seed=4)
    save_regnet_checkpoint(original, tmp_path / "ckpt_netG", iteration=7)
    loaded = build_regnet("reference", tmp_path / "ckpt_netG")  # the stored config wins
    assert loaded.config == original.config


def test_regnet_checkpoint_mismatch_is_named(tmp_path):
    torch.save({"optimizer_netG": RegNetGenerator(regnet_config("small")).state_dict()}, tmp_path / "x_netG")
    with pytest.raises(CheckpointError, match=r"shape mismatches: encoder\.convolutions\.0\.0\.conv\.weight"):
        build_regnet("reference", tmp_path / "x_netG")
    torch.save({"netG": {}}, tmp_path / "y_netG")
    with pytest.raises(CheckpointError, match="no 'optimizer_netG'"):
        build_regnet("reference", tmp_path / "y_netG")


# ----------------------------------------------------------------------------------------- vocoders
def test_melgan_reference_size_and_hop():
    model = build_melgan()
    assert abs(count_parameters(model) / 1e6 - 4.26) < 0.005
    with torch.no_grad():
        assert model(torch.rand(1, 80, 10)).shape == (1, 1, 10 * REGNET.hop_length)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_hifigan_sizes_match_the_paper(variant):
    model = build_hifigan(variant)
    assert count_parameters(model) // 10_000 / 100 == PAPER_PARAMETERS_M[variant]  # the paper truncates
    assert model.config.hop_length == REGNET.hop_length
    with torch.no_grad():
        assert model(torch.rand(1, 80, 7)).shape == (1, 1, 7 * REGNET.hop_length)


def test_melgan_weight_norm_checkpoint_round_trip(tmp_path):
    original = build_melgan(seed=9)
    state = melgan_checkpoint_state(original)
    assert any(k.endswith("weight_g") for k in state) and not any(k.endswith(".weight") for k in state)
    torch.save(state, tmp_path / "best_netG.pt")
    loaded = build_melgan(checkpoint=tmp_path / "best_netG.pt")
    mel = torch.rand(1, 80, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel), original(mel), atol=1e-5, rtol=1e-4)


def test_hifigan_weight_norm_checkpoint_round_trip(tmp_path):
    original = build_hifigan("v3", seed=2)
    torch.save(hifigan_checkpoint(original), tmp_path / "g_02500000")
    loaded = build_hifigan("v3", tmp_path / "g_02500000")
    mel = torch.rand(1, 80, 9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel), original(mel), atol=1e-5, rtol=1e-4)
    broken = hifigan_checkpoint(original)
    del broken["generator"]["conv_post.weight_g"]
    torch.save(broken, tmp_path / "g_broken")
    with pytest.raises(CheckpointError, match=r"conv_post\.weight_v has no matching conv_post\.weight_g"):
        build_hifigan("v3", tmp_path / "g_broken")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        build_hifigan("v1", tmp_path / "g_02500000")  # a V3 checkpoint is not a V1


def test_istft_vocoder_inverts_the_stft_as_torch_does_and_writes_a_hop_per_frame():
    n_fft, hop = 1024, REGNET.hop_length
    inverse = InverseSTFT(n_fft, hop)
    g = torch.Generator().manual_seed(0)
    real, imag = torch.randn(2, n_fft // 2 + 1, 30, generator=g), torch.randn(2, n_fft // 2 + 1, 30, generator=g)
    reference = torch.istft(torch.complex(real, imag), n_fft, hop, n_fft, torch.hann_window(n_fft), center=True,
                            length=30 * hop)  # fmt: skip
    torch.testing.assert_close(inverse(real, imag), reference, atol=1e-6, rtol=1e-5)
    sound = torch.randn(1, 40 * hop, generator=g)  # and a real STFT comes back as the sound it came from
    spectrum = torch.stft(sound, n_fft, hop, n_fft, torch.hann_window(n_fft), center=True, return_complex=True)
    torch.testing.assert_close(inverse(spectrum.real, spectrum.imag)[:, : sound.shape[1]], sound, atol=1e-5, rtol=0)
    model = build_istft_vocoder(seed=4)
    assert abs(count_parameters(model) / 1e6 - 2.82) < 0.005
    with torch.no_grad():
        assert model(torch.rand(2, 80, 9)).shape == (2, 1, 9 * hop)


def test_istft_vocoder_serves_its_fixed_noise_and_round_trips_its_checkpoint(tmp_path):
    model = build_istft_vocoder(seed=5)
    table = model.config.noise_frames
    mel = torch.rand(1, 80, table + 20)
    noise = model.served_noise(mel)
    assert noise.shape == (1, model.config.noise_channels, table + 20)
    assert torch.equal(noise[..., table:], noise[..., :20]), "the table repeats past its end"
    with torch.no_grad():
        served = model(mel)
        assert torch.equal(served, model(mel)), "served: the same mel makes the same sound"
        assert not torch.equal(served, model(mel, torch.randn_like(noise))), "it reads the noise"
    blob = istft_checkpoint(model)
    assert blob["architecture"] == "istft" and "noise_table" in blob["state_dict"]
    torch.save(blob, tmp_path / "best_netG.pt")
    half = {**blob, "state_dict": {k: v.half() for k, v in blob["state_dict"].items()}}
    torch.save(half, tmp_path / "half.pt")
    with torch.no_grad():
        torch.testing.assert_close(build_istft_vocoder(checkpoint=tmp_path / "best_netG.pt")(mel), served)
        assert build_istft_vocoder(checkpoint=tmp_path / "half.pt")(mel).dtype == torch.float32
    torch.save(melgan_checkpoint_state(build_melgan(seed=1)), tmp_path / "melgan.pt")
    with pytest.raises(CheckpointError, match="not an istft vocoder checkpoint"):
        build_istft_vocoder(checkpoint=tmp_path / "melgan.pt")


def test_istft_windows_a_stride_apart_make_the_same_sound_where_they_overlap():
    """Served, the table is read from its start again every window stride (``noise_period``), so two windows a
    stride apart read the same noise at the same instant of the video and, fed the same mel there, make the same
    sound in the middle of their overlap (the cross-fade then keeps the level); read from each window's own start
    (the table's length as the period), their phases differ there."""
    model = build_istft_vocoder(seed=7)
    stride, frames, hop = PreprocessOptions().stride_mel_frames, REGNET.mel_frames_per_window, REGNET.hop_length
    assert (stride, frames) == (776, 860)
    mel = torch.rand(1, 80, stride + frames, generator=torch.Generator().manual_seed(0))
    shares = {}
    for period in (model.config.noise_frames, stride):
        model.noise_period = period
        with torch.no_grad():
            first, second = model(mel[..., :frames]), model(mel[..., stride : stride + frames])
        # the overlap's middle, clear of both windows' edges by more than the network's reach (21 frames)
        here, there = first[0, 0, 805 * hop : 832 * hop], second[0, 0, (805 - stride) * hop : (832 - stride) * hop]
        shares[period] = float(np.corrcoef(here.numpy(), there.numpy())[0, 1])
    assert shares[stride] > 0.999 and shares[model.config.noise_frames] < 0.9, shares


def test_seeded_init_is_deterministic():
    a, b = build_melgan(seed=1), build_melgan(seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    c = build_melgan(seed=2)
    assert not torch.equal(a.model[1].weight, c.model[1].weight)
