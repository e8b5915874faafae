"""Reading, converting, resampling and writing audio: real files from libsndfile and sox."""

import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf

from ivr.errors import IvrError
from ivr.media import audio


def _tone(freq, seconds, rate, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_freq(x, rate):
    spec = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64) * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"])
def test_reads_every_wav_subtype(tmp_path, subtype):
    x = _tone(440, 0.5, 8000)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, x, 8000, subtype=subtype)
    y, rate = audio.read_audio(path)
    assert rate == 8000 and y.dtype == np.int16 and len(y) == len(x)
    err = np.abs(audio.to_float(y) - x)
    tolerance = {"PCM_U8": 0.01, "ULAW": 0.02, "ALAW": 0.02}.get(subtype, 1e-4)
    assert err.max() < tolerance
    assert abs(_peak_freq(y, rate) - 440) < 3


@pytest.mark.parametrize("enc", [["-e", "signed-integer", "-b", "16"], ["-e", "u-law"], ["-e", "a-law"],
                                 ["-e", "floating-point", "-b", "32"], ["-e", "signed-integer", "-b", "24"]])
def test_reads_wav_written_by_sox(tmp_path, enc):
    path = tmp_path / "sox.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", *enc, str(path), "synth", "0.5", "sine", "1000",
                    "vol", "0.5"], check=True, timeout=60)
    y, rate = audio.read_audio(path)
    assert rate == 8000 and len(y) == 4000
    assert abs(_peak_freq(y, rate) - 1000) < 3
    assert -8 < audio.dbfs(y) < -5  # 0.5 of full scale = -6 dBFS


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = _tone(500, 0.3, 16000, 0.4), _tone(1500, 0.3, 16000, 0.2)
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    y, rate = audio.read_audio(path)
    assert rate == 16000 and y.ndim == 1
    np.testing.assert_allclose(audio.to_float(y), (left + right) / 2, atol=2e-4)


def test_resampling_44k1_to_16k_keeps_the_tone(tmp_path):
    path = tmp_path / "cd.wav"
    sf.write(path, _tone(1234.0, 1.0, 44100), 44100, subtype="PCM_16")
    y, rate = audio.read_audio(path, 16000)
    assert rate == 16000 and abs(len(y) - 16000) <= 1
    assert abs(_peak_freq(y, rate) - 1234.0) < 2
    assert abs(audio.dbfs(y) - audio.dbfs(_tone(1234.0, 1.0, 44100))) < 0.2


def test_resample_and_stream_resampler_agree_on_frequency():
    x = audio.to_int16(_tone(697, 1.0, 22050))
    whole = audio.resample(x, 22050, 8000)
    st = audio.StreamResampler(22050, 8000)
    parts = [st.process(f) for f in audio.frames(x, 22050)] + [st.process(np.zeros(0, np.int16), last=True)]
    streamed = np.concatenate(parts)
    assert abs(len(streamed) - len(whole)) <= 200
    assert abs(_peak_freq(whole, 8000) - 697) < 2 and abs(_peak_freq(streamed[:7000], 8000) - 697) < 3


def test_float_int16_conversion_round_trips_and_clips():
    x = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 0.999, 1.5], dtype=np.float32)
    y = audio.to_int16(x)
    assert list(y) == [-32768, -32768, -16384, 0, 16384, 32735, 32767]
    np.testing.assert_allclose(audio.to_float(y)[2:5], [-0.5, 0.0, 0.5])


def test_frames_pad_the_last_frame():
    x = np.arange(330, dtype=np.int16)
    fr = list(audio.frames(x, 8000))
    assert [len(f) for f in fr] == [160, 160, 160] and audio.FRAME_MS == 20
    assert list(fr[2][:10]) == list(range(320, 330)) and not fr[2][10:].any()


def test_dbfs():
    assert audio.dbfs(np.zeros(100, np.int16)) == float("-inf")
    assert abs(audio.dbfs(audio.to_int16(_tone(1000, 1, 8000, 0.1))) + 20) < 0.05


def test_write_wav_and_stereo(tmp_path):
    x = audio.to_int16(_tone(300, 0.2, 8000))
    audio.write_wav(tmp_path / "m.wav", x, 8000)
    info = sf.info(tmp_path / "m.wav")
    assert (info.channels, info.samplerate, info.subtype) == (1, 8000, "PCM_16")
    np.testing.assert_array_equal(audio.read_audio(tmp_path / "m.wav")[0], x)
    audio.write_wav_stereo(tmp_path / "s.wav", x, x[:800] // 2, 8000)
    d, _ = sf.read(tmp_path / "s.wav", dtype="int16")
    assert d.shape == (len(x), 2)
    np.testing.assert_array_equal(d[:, 0], x)
    np.testing.assert_array_equal(d[:800, 1], x[:800] // 2)
    assert not d[800:, 1].any()


# --- errors: each names the file and says what to do -------------------------------------------------------

def _expect_error(path, *words, **kw):
    with pytest.raises(IvrError) as ei:
        audio.read_audio(path, **kw)
    msg = str(ei.value)
    assert str(path) in msg and "fix:" in msg
    for w in words:
        assert w in msg.lower()
    return msg


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.wav", "does not exist")


def test_not_audio(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is a text file, not a recording\n" * 20)
    _expect_error(p, "cannot be read as audio")


def test_directory(tmp_path):
    _expect_error(tmp_path, "directory")


def test_truncated(tmp_path):
    p = tmp_path / "cut.wav"
    sf.write(p, _tone(440, 1.0, 8000), 8000, subtype="PCM_16")
    p.write_bytes(p.read_bytes()[:5000])
    _expect_error(p, "truncated")


def test_truncated_header(tmp_path):
    p = tmp_path / "head.wav"
    sf.write(p, _tone(440, 1.0, 8000), 8000, subtype="PCM_16")
    p.write_bytes(p.read_bytes()[:30])
    _expect_error(p, "cannot be read")


def test_empty(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, np.int16), 8000, subtype="PCM_16")
    _expect_error(p, "no audio")


def test_zero_channels(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, _tone(440, 0.1, 8000), 8000, subtype="PCM_16")
    raw = bytearray(p.read_bytes())
    assert raw[12:16] == b"fmt "
    raw[22:24] = struct.pack("<H", 0)
    p.write_bytes(bytes(raw))
    _expect_error(p, "zero audio channels")


def test_absurd_length(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, np.zeros(8000 * 5, np.int16), 8000, subtype="PCM_16")
    msg = _expect_error(p, "an hour of audio", max_seconds=2)
    assert "trim" in msg
    # an hour-long header is refused before any of it is read
    big = tmp_path / "hour.wav"
    with sf.SoundFile(big, "w", 8000, 1, "PCM_16") as fh:
        fh.write(np.zeros(8000 * 60, np.int16))
    _expect_error(big, "limit", max_seconds=30)


@pytest.mark.parametrize("rate", [1, 100, 3999, 400000])
def test_absurd_sample_rate_is_named(tmp_path, rate):
    path = tmp_path / f"rate{rate}.wav"
    sf.write(path, np.zeros(max(rate // 10, 200), dtype=np.int16), rate, subtype="PCM_16")
    with pytest.raises(IvrError) as err:
        audio.read_audio(path, 8000)
    assert f"{rate} Hz" in str(err.value) and str(path) in str(err.value) and err.value.fix


@pytest.mark.parametrize("rate", [4000, 11025, 48000, 96000])
def test_unusual_but_sensible_rates_are_resampled(tmp_path, rate):
    path = tmp_path / f"rate{rate}.wav"
    sf.write(path, np.zeros(rate // 2, dtype=np.int16), rate, subtype="PCM_16")
    samples, got = audio.read_audio(path, 8000)
    assert got == 8000 and abs(samples.size - 4000) <= 2


def test_zero_byte_file_is_called_empty(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(IvrError, match="is empty"):
        audio.read_audio(path)


def test_noise_is_unit_rms_and_pink_tilts_down():
    rng = np.random.default_rng(1)
    white, pink = audio.noise(80000, "white", rng), audio.noise(80000, "pink", rng)
    assert abs(np.sqrt(np.mean(white**2)) - 1) < 1e-9 and abs(np.sqrt(np.mean(pink**2)) - 1) < 1e-9
    spec = np.abs(np.fft.rfft(pink)) ** 2
    low, high = spec[100:1000].mean(), spec[20000:30000].mean()  # pink: power falls as 1/f
    assert low > 10 * high
    with pytest.raises(ValueError):
        audio.noise(10, "brown")
