"""Recorded prompts: file names, conversion, the status warnings, and a recording heard in a simulated call."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr.cli import main
from ivr.media import recordings as rec
from ivr.media.audio import read_audio, to_float

CALLS = Path(__file__).parent / "fixtures" / "calls"


def sweep(rate: int, seconds: float = 3.0, f0: float = 300.0, f1: float = 3000.0, amp: float = 0.05) -> np.ndarray:
    """A linear chirp f0 -> f1: a known spectrum no synthesised Vietnamese sentence resembles."""
    t = np.arange(int(seconds * rate)) / rate
    k = (f1 - f0) / seconds
    return amp * np.sin(2 * np.pi * (f0 * t + 0.5 * k * t * t))


@pytest.fixture
def recdir(tmp_path, monkeypatch):
    d = tmp_path / "audio"
    d.mkdir()
    monkeypatch.setenv(rec.ENV_DIR, str(d))
    return d


def test_file_names_round_trip():
    for item in ("greet_long", "no_input_1", "topic_menu:password", "confirm:7", "faq_12"):
        assert rec.item_id(rec.file_name(item)) == item
    assert rec.file_name("topic_menu:password") == "topic_menu__password.wav"
    with pytest.raises(ValueError):
        rec.file_name("../etc/passwd")


def test_conversion_mono_rate_loudness_and_trim(tmp_path):
    r = 44100
    x = sweep(r, 2.0)
    lead = np.zeros(int(1.0 * r))  # a second of silence before the talent speaks
    st = np.concatenate([lead, x, lead])
    path = tmp_path / "p.wav"
    sf.write(path, np.stack([st, st], 1), r, subtype="FLOAT")  # stereo float at 44.1 kHz
    y = rec.convert(path, 8000)
    assert y.dtype == np.int16 and y.ndim == 1
    assert abs(len(y) / 8000 - (2.0 + 2 * rec.EDGE_S)) < 0.03  # silence trimmed to EDGE_S either side
    lufs = rec.loudness_lufs(to_float(y).astype(np.float64), 8000)
    assert abs(lufs - rec.TARGET_LUFS) < 1.0, lufs
    original = rec.loudness_lufs(x, r)
    assert original < rec.TARGET_LUFS - 5  # the gain did real work


def test_peak_ceiling_limits_the_gain(tmp_path):
    r = 16000
    x = np.zeros(r)
    x[r // 2: r // 2 + 40] = 0.9  # a click in near silence: loudness gain would clip it
    x += 0.001 * np.sin(2 * np.pi * 440 * np.arange(r) / r)
    path = tmp_path / "click.wav"
    sf.write(path, x, r)
    info, y, _ = rec.analyse(path)
    assert rec.peak_dbfs(y) <= rec.PEAK_CEILING_DBFS + 0.01
    assert info.gain_db < rec.TARGET_LUFS - info.lufs


def _status(recdir):
    from ivr.channels.session import Resources
    from ivr.cli.prompts import status_rows

    rows, unknown = status_rows(Resources.load(model_path="none", tts_rate=8000), recdir, 8000, tts=False)
    return {r["id"]: r for r in rows}, unknown


def test_status_warnings(recdir):
    r = 16000
    loud = np.clip(3.0 * sweep(r, 1.0, amp=1.0), -1.0, 1.0)  # hard-clipped
    sf.write(recdir / "goodbye.wav", loud, r)
    sf.write(recdir / "ask.wav", sweep(r, 2.0, amp=0.003), r)  # about -50 LUFS
    sf.write(recdir / "invalid.wav", sweep(r, 30.0), r)  # a 10-word sentence said in 30 s
    sf.write(recdir / "error.wav", sweep(r, 2.0), r)
    (recdir / "error.txt").write_text("Một câu khác hẳn.", encoding="utf-8")  # recorded an older text
    sf.write(recdir / "greet_short.wav", sweep(r, 2.0), r)
    os.utime(recdir / "greet_short.wav", (1_000_000, 1_000_000))  # recorded long before prompts/vi.yaml
    sf.write(recdir / "operator.wav", sweep(r, 2.0), r)
    (recdir / "operator.wav.bak").write_text("x")
    sf.write(recdir / "no_such_prompt.wav", sweep(r, 1.0), r)
    (recdir / "transfer_failed.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")

    rows, unknown = _status(recdir)
    assert unknown == ["no_such_prompt.wav"]
    assert any("clipped" in w for w in rows["goodbye"]["warnings"])
    assert any("too quiet" in w for w in rows["ask"]["warnings"])
    assert any("far longer" in w for w in rows["invalid"]["warnings"])
    assert rows["error"]["voice"].startswith("tts") and any("out of date" in w for w in rows["error"]["warnings"])
    assert any("older than its text" in w for w in rows["greet_short"]["warnings"])
    assert rows["transfer_failed"]["voice"] == "tts (recording unreadable)"
    assert rows["operator"]["voice"] == "recorded" and rows["operator"]["warnings"] == []
    assert rows["operator"]["lufs"] is not None and rows["operator"]["seconds"] == pytest.approx(2.0, abs=0.35)
    assert rows["faq_3"]["voice"] == "tts"


def test_script_csv_lists_every_sentence(tmp_path, recdir, capsys):
    import csv

    sf.write(recdir / "goodbye.wav", sweep(8000, 1.0), 8000)
    out = tmp_path / "script.csv"
    assert main(["prompts", "script", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    ids = {r["id"]: r for r in rows}
    assert {"greet_long", "goodbye", "no_input_1", "topic_menu:password", "faq_1", "confirm:7"} <= set(ids)
    assert ids["topic_menu:password"]["file"] == "topic_menu__password.wav"
    assert "SmartCA" in ids["greet_long"]["text"] and "SmartCA" not in ids["greet_long"]["spoken"]
    assert main(["prompts", "script", "--missing", "--out", str(out)]) == 0
    missing = {r["id"] for r in csv.DictReader(out.open(encoding="utf-8-sig"))}
    assert "goodbye" not in missing and "greet_long" in missing
    assert main(["prompts", "script", "--out", str(tmp_path / "nope" / "s.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["prompts", "status", "--dir", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def _ncc_peak(signal: np.ndarray, template: np.ndarray) -> tuple[float, int]:
    """Peak of the normalised cross-correlation of ``template`` sliding over ``signal``, and its offset."""
    s = signal.astype(np.float64)
    t = template.astype(np.float64)
    t = (t - t.mean()) / (np.linalg.norm(t - t.mean()) + 1e-12)
    n = len(t)
    size = 1 << int(np.ceil(np.log2(len(s) + n)))
    corr = np.fft.irfft(np.fft.rfft(s, size) * np.conj(np.fft.rfft(t, size)), size)[: len(s) - n + 1]
    c1 = np.concatenate([[0.0], np.cumsum(s)])
    c2 = np.concatenate([[0.0], np.cumsum(s * s)])
    win_sum = c1[n:] - c1[:-n]
    win_energy = np.maximum(c2[n:] - c2[:-n] - win_sum**2 / n, 1e-12)
    ncc = corr / np.sqrt(win_energy)
    k = int(np.argmax(ncc))
    return float(ncc[k]), k


def test_recorded_greeting_is_heard_in_a_call(tmp_path, recdir, capsys):
    """A chirp recorded as greet_long (stereo float, 44.1 kHz) is what the IVR side of `ivr call` plays
    first; the synthesised goodbye/menu are not the chirp. Checked on the audio, by correlation."""
    r = 44100
    x = sweep(r, 3.0)
    sf.write(recdir / "greet_long.wav", np.stack([x, 0.5 * x], 1), r, subtype="FLOAT")
    expected = rec.convert(recdir / "greet_long.wav", 8000)

    out = tmp_path / "ivr.wav"
    logs = tmp_path / "logs"
    assert main(["call", str(CALLS / "silent.wav"), "--out", str(out), "--model", "none", "--log-dir", str(logs),
                 "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    plays = [e for e in events if e["type"] == "play"]
    assert plays[0]["prompt_id"] == "greet_long" and plays[1]["prompt_id"] == "main_menu"
    assert plays[0]["seconds"] == pytest.approx(len(expected) / 8000, abs=0.001)

    data, rate = sf.read(out, dtype="int16")
    ivr = data[:, 1]
    peak, at = _ncc_peak(ivr, expected)
    assert peak > 0.99, peak
    assert at == pytest.approx(plays[0]["t"] * 8000, abs=2)
    # the chirp is not what the rest of the call sounds like: the menu (synthesised) does not correlate
    menu_start = int(plays[1]["t"] * 8000)
    menu = ivr[menu_start: menu_start + int(plays[1]["seconds"] * 8000)]
    assert _ncc_peak(menu, expected[: len(menu) // 2])[0] < 0.5
    # the spectrum: the greeting's energy lies in the chirp's 300-3000 Hz band
    greet = to_float(ivr[at: at + len(expected)]).astype(np.float64)
    spec = np.abs(np.fft.rfft(greet)) ** 2
    f = np.fft.rfftfreq(len(greet), 1 / 8000)
    assert spec[(f >= 280) & (f <= 3020)].sum() / spec.sum() > 0.97

    # the caller's side is the fixture, untouched
    caller, _ = read_audio(CALLS / "silent.wav", 8000)
    assert np.array_equal(data[: len(caller), 0], caller[: len(data)])


def test_out_of_date_recording_is_not_played(recdir):
    from ivr.channels.session import Resources

    sf.write(recdir / "greet_long.wav", sweep(8000, 3.0), 8000)
    (recdir / "greet_long.txt").write_text("Chào mừng quý khách (bản cũ).", encoding="utf-8")
    res = Resources.load(model_path="none", tts_rate=8000)
    from ivr.media.recordings import RecordedVoice

    assert not isinstance(res.tts, RecordedVoice)  # nothing playable: the synthesiser as it was
    (recdir / "greet_long.txt").write_text(res.prompts.text("greet_long"), encoding="utf-8")
    res = Resources.load(model_path="none", tts_rate=8000)
    assert isinstance(res.tts, RecordedVoice)
    got = res.tts.get(res.prompts.text("greet_long"), 8000)
    assert _ncc_peak(got, rec.convert(recdir / "greet_long.wav", 8000))[0] > 0.999


def test_unreadable_recording_falls_back_to_tts(recdir):
    from ivr.channels.session import Resources

    (recdir / "goodbye.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    res = Resources.load(model_path="none", tts_rate=8000)
    audio = res.tts.get(res.prompts.text("goodbye"), 8000)
    assert len(audio) > 8000  # the synthesised goodbye, not a crash


def test_a_re_recorded_file_is_converted_anew(tmp_path):
    d = tmp_path / "audio"
    d.mkdir()
    cache = tmp_path / "cache"
    sf.write(d / "goodbye.wav", sweep(16000, 1.0), 16000)
    first = rec.Recordings({"goodbye": "Tạm biệt"}, d, cache_dir=cache).get("Tạm biệt", 8000)
    assert len(list(cache.rglob("*.npy"))) == 1
    sf.write(d / "goodbye.wav", sweep(16000, 2.0, f0=500), 16000)  # the talent records it again
    second = rec.Recordings({"goodbye": "Tạm biệt"}, d, cache_dir=cache).get("Tạm biệt", 8000)
    assert len(list(cache.rglob("*.npy"))) == 2
    assert abs(len(second) - len(first)) > 7000
    again = rec.Recordings({"goodbye": "Tạm biệt"}, d, cache_dir=cache).get("Tạm biệt", 8000)
    assert np.array_equal(again, second)  # from the disk cache


def test_recorded_answer_in_another_voice_is_heard(tmp_path, recdir, capsys):
    """An answer recorded by another voice (espeak-ng's English voice, at its own 22.05 kHz) as faq_1.wav
    is what the caller hears for FAQ 1; the prompt after it, not recorded, is synthesised."""
    import subprocess

    raw = tmp_path / "talent.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(raw),
                    "You can use one digital signature for many services; the service fee depends on the package."], check=True)
    assert sf.info(raw).samplerate != 8000
    (recdir / "faq_1.wav").write_bytes(raw.read_bytes())
    expected = rec.convert(recdir / "faq_1.wav", 8000)

    out = tmp_path / "ivr.wav"
    assert main(["call", str(CALLS / "listen_answer_then_menu.wav"), "--out", str(out), "--model", "none",
                 "--log-dir", str(tmp_path / "logs"), "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    play = next(e for e in events if e["type"] == "play" and e.get("faq_id") == 1)
    assert play["seconds"] == pytest.approx(len(expected) / 8000, abs=0.001)
    other = next(e for e in events if e["type"] == "play" and e.get("prompt_id") == "after_answer")  # TTS
    ivr = sf.read(out, dtype="int16")[0][:, 1]
    start = round(play["t"] * 8000)
    head = expected[: int(0.5 * 8000)]
    assert _ncc_peak(ivr[start - 80: start + len(head) + 80], head)[0] > 0.99
    s3 = round(other["t"] * 8000)
    assert _ncc_peak(ivr[s3: s3 + 3 * len(head)], head)[0] < 0.5
