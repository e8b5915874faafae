"""G.711 μ-law / A-law against libsndfile's codec, sox, and values from the standard."""

import io
import subprocess

import numpy as np
import pytest
import soundfile as sf

from ivr.media import g711

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_BYTES = bytes(range(256))


def _sndfile_encode(x: np.ndarray, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, 8000, subtype=subtype, format="RAW")
    return buf.getvalue()


def _sndfile_decode(data: bytes, subtype: str) -> np.ndarray:
    out, _ = sf.read(io.BytesIO(data), dtype="int16", samplerate=8000, channels=1, subtype=subtype, format="RAW")
    return out


@pytest.mark.parametrize(
    "subtype,encode", [("ULAW", g711.ulaw_encode), ("ALAW", g711.alaw_encode)], ids=["ulaw", "alaw"]
)
def test_encode_every_int16_matches_libsndfile(subtype, encode):
    assert encode(ALL_INT16) == _sndfile_encode(ALL_INT16, subtype)


@pytest.mark.parametrize(
    "subtype,decode", [("ULAW", g711.ulaw_decode), ("ALAW", g711.alaw_decode)], ids=["ulaw", "alaw"]
)
def test_decode_every_byte_matches_libsndfile(subtype, decode):
    ours = decode(ALL_BYTES)
    assert ours.dtype == np.int16
    np.testing.assert_array_equal(ours, _sndfile_decode(ALL_BYTES, subtype))


def test_known_values_from_the_standard():
    # μ-law: 0xFF and 0x7F are +0 / -0, 0x80 / 0x00 the extremes (±8031 in 14-bit units = ±32124).
    assert list(g711.ulaw_decode(b"\xff\x7f\x80\x00")) == [0, 0, 32124, -32124]
    assert g711.ulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xff\x80\x00"
    # A-law: even bits inverted; 0xD5 / 0x55 are the smallest levels ±8 (±1 in 13-bit half-steps).
    assert list(g711.alaw_decode(b"\xd5\x55\xaa\x2a")) == [8, -8, 32256, -32256]
    assert g711.alaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)) == b"\xd5\x55\xaa\x2a"


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_round_trip_is_idempotent_and_close(law):
    enc, dec = (g711.ulaw_encode, g711.ulaw_decode) if law == "ulaw" else (g711.alaw_encode, g711.alaw_decode)
    once = dec(enc(ALL_INT16))
    np.testing.assert_array_equal(dec(enc(once)), once)  # decoded levels are fixed points
    err = np.abs(once.astype(np.int32) - ALL_INT16)
    # error stays within half of the largest step (1024), clipping included
    assert err.max() <= 1024
    mid = np.abs(ALL_INT16.astype(np.int32)) < 1000
    assert err[mid].max() <= 35  # steps below 1000 are at most 64, plus the truncated low bits


@pytest.mark.parametrize("law,sox_enc", [("ulaw", "u-law"), ("alaw", "a-law")])
def test_sox_decodes_our_bytes(tmp_path, law, sox_enc):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(8000) * 6000).clip(-32768, 32767).astype(np.int16)
    enc, dec = (g711.ulaw_encode, g711.ulaw_decode) if law == "ulaw" else (g711.alaw_encode, g711.alaw_decode)
    src = tmp_path / f"x.{law}"
    src.write_bytes(enc(x))
    out = tmp_path / "x.s16"
    subprocess.run(
        ["sox", "-t", "raw", "-r", "8000", "-e", sox_enc, "-b", "8", "-c", "1", str(src),
         "-t", "raw", "-e", "signed-integer", "-b", "16", str(out)],
        check=True, timeout=60,
    )
    np.testing.assert_array_equal(np.frombuffer(out.read_bytes(), dtype="<i2"), dec(src.read_bytes()))


def test_float_input_is_refused():
    with pytest.raises(TypeError):
        g711.ulaw_encode(np.zeros(4, dtype=np.float32))
