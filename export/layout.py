"""Names of the models s2s puts in the Triton model repository (light: no torch import)."""

#: The networks `s2s export` writes, in pipeline order.
MODEL_NAMES = ("tsn_rgb", "tsn_flow", "generator", "vocoder")
#: Vocoder networks the export can build.
VOCODERS = ("melgan", "hifigan-v1", "hifigan-v2", "hifigan-v3")
#: Manifest file at the repository root recording the source of every artifact.
MANIFEST = "manifest.json"
