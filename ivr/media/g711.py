"""ITU-T G.711 μ-law and A-law, vectorised with numpy lookup tables.

Encoding is sign-magnitude on the 16-bit sample (the magnitude is truncated to 14 bits for μ-law and
13 bits for A-law, as in the ITU reference and libsndfile), so every int16 maps to the same byte as
the ITU-T G.191 / libsndfile codecs; decoding gives the standard reconstruction levels.
"""

from __future__ import annotations

import numpy as np


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _segment(value: np.ndarray, ends: list[int]) -> np.ndarray:
    return np.searchsorted(np.asarray(ends), value, side="left")


def _build_ulaw_encode() -> np.ndarray:
    x = np.arange(-32768, 32768, dtype=np.int32)
    mask = np.where(x < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(x) >> 2, 8159) + 0x21  # 14-bit magnitude plus bias
    seg = _segment(mag, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))  # top code when clipped
    table = (code ^ mask).astype(np.uint8)
    return np.roll(table, -32768)  # index by the uint16 view of the sample


def _build_alaw_encode() -> np.ndarray:
    x = np.arange(-32768, 32768, dtype=np.int32)
    mask = np.where(x < 0, 0x55, 0xD5)
    mag = np.minimum(np.abs(x) >> 3, 0xFFF)  # 13-bit magnitude, sign apart
    seg = _segment(mag, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    code = np.where(seg < 2, (seg << 4) | ((mag >> 1) & 0x0F), (seg << 4) | ((mag >> seg) & 0x0F))
    table = (code ^ mask).astype(np.uint8)
    return np.roll(table, -32768)


_ULAW_DEC = _build_ulaw_decode()
_ALAW_DEC = _build_alaw_decode()
_ULAW_ENC = _build_ulaw_encode()
_ALAW_ENC = _build_alaw_encode()


def _as_index(samples) -> np.ndarray:
    x = np.asarray(samples)
    if x.dtype != np.int16:
        if x.dtype.kind == "f":
            raise TypeError("G.711 encoders take int16 samples; convert floats with ivr.media.audio.to_int16")
        x = np.clip(x, -32768, 32767).astype(np.int16)
    return np.ascontiguousarray(x).view(np.uint16)


def ulaw_encode(samples) -> bytes:
    """int16 samples -> μ-law bytes (one byte per sample)."""
    return _ULAW_ENC[_as_index(samples)].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes -> int16 samples."""
    return _ULAW_DEC[np.frombuffer(bytes(data), dtype=np.uint8)]


def alaw_encode(samples) -> bytes:
    """int16 samples -> A-law bytes (one byte per sample)."""
    return _ALAW_ENC[_as_index(samples)].tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes -> int16 samples."""
    return _ALAW_DEC[np.frombuffer(bytes(data), dtype=np.uint8)]
