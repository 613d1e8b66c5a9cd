"""s2s: silent video in, sound that follows the picture out, served on NVIDIA Triton."""

__version__ = "0.1.0"
