"""Spectrogram pictures: RegNet's [0, 1] log-mel as an image, for the gateway's result and the eval report.

People judge sound by looking and listening: the gateway shows the generated mel under the page's
player, and ``s2s eval`` draws each clip's generated, own and vocoded-true mels one above the other.
Low frequencies at the bottom, one column per mel frame (11.6 ms), magma colours (OpenCV), 0 = -100 dB.
"""

from __future__ import annotations

import cv2
import numpy as np

#: picture rows per mel band
ROW_SCALE = 2


def mel_image(mel: np.ndarray, label: str = "") -> np.ndarray:
    """(n_mels, frames) in [0, 1] -> BGR uint8 (n_mels * ROW_SCALE, frames, 3); ``label`` written top left."""
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2 or mel.shape[1] == 0:
        raise ValueError(f"expected a mel (bands, frames), got shape {mel.shape}")
    grey = (np.clip(mel[::-1], 0.0, 1.0) * 255).round().astype(np.uint8)
    image = cv2.applyColorMap(np.repeat(grey, ROW_SCALE, axis=0), cv2.COLORMAP_MAGMA)
    if label:
        cv2.putText(image, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"could not encode a {image.shape} picture as PNG")
    return data.tobytes()


def stacked(mels: dict[str, np.ndarray]) -> np.ndarray:
    """Labelled mels one above the other, a white line between them, cut to the shortest."""
    frames = min(m.shape[1] for m in mels.values())
    rows = [mel_image(m[:, :frames], label) for label, m in mels.items()]
    line = np.full((2, frames, 3), 255, dtype=np.uint8)
    return np.vstack([part for row in rows for part in (row, line)][:-1])
