"""The REGNET recipe: every audio/video number the parts share, defined once.

Follows REGNET ("Generating Visually Aligned Sound from Videos", Chen et al., IEEE TIP 2020,
github.com/PeihaoChen/regnet): 21.5 fps video cut into 10 s windows; 22050 Hz mono audio; an 80-band
Slaney mel (fmin 125, fmax 7600) on an STFT with n_fft 1024, hop 256, Hann window 1024, centred;
magnitudes mapped to [0, 1] by ``clip((20 log10(max(M, 1e-5)) - 20 + 100) / 100, 0, 1)``.

Frame and sample counts are derived here and nowhere else:

    frames per window      T = round(21.5 * 10)            = 215
    mel frames per window  F = 4 * T                        = 860   (the generator upsamples time x4)
    samples per window     S = F * hop                      = 220160 (9.984 s)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """Audio/video settings shared by preprocessing, the networks, export and evaluation."""

    # video
    fps: float = 21.5
    window_s: float = 10.0
    #: frames consecutive windows share and cross-fade (about 1 s): ours, RegNet butts its windows
    overlap_frames: int = 21
    image_size: int = 224  #: network input, frames squashed (no crop) to image_size x image_size
    flow_width: int = 340  #: frames are resized to flow_width x flow_height for optical flow
    flow_height: int = 256
    rgb_mean_bgr: tuple[float, float, float] = (104.0, 117.0, 128.0)  #: BN-Inception, BGR 0..255, std 1
    flow_bound: float = 20.0  #: flow clipped to +-flow_bound px, then mapped to 0..255
    flow_mean: float = 128.0
    # audio
    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 125.0
    fmax: float = 7600.0
    min_level_db: float = -100.0
    ref_level_db: float = 20.0
    amp_floor: float = 1e-5
    #: mel frames per video frame: the RegNet decoder's two stride-2 transposed convolutions
    mel_frames_per_frame: int = 4
    # features
    feature_dim: int = 1024  #: TSN global-pool output per stream (RGB, flow)

    @property
    def frames_per_window(self) -> int:
        return round(self.fps * self.window_s)

    @property
    def mel_frames_per_window(self) -> int:
        return self.mel_frames_per_frame * self.frames_per_window

    @property
    def samples_per_window(self) -> int:
        return self.mel_frames_per_window * self.hop_length

    @property
    def visual_dim(self) -> int:
        """Generator input width: RGB and flow features concatenated."""
        return 2 * self.feature_dim

    def mel_frames(self, frames: int) -> int:
        return self.mel_frames_per_frame * frames

    def samples(self, frames: int) -> int:
        return self.mel_frames(frames) * self.hop_length


#: The recipe every part uses.
REGNET = Recipe()
