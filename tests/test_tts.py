"""Speech synthesis with the real engine: pyttsx3 over espeak-ng's Vietnamese voices."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr.cli import main
from ivr.errors import IvrError
from ivr.language.spoken import spoken_answer
from ivr.media import tts
from ivr.media.audio import dbfs
from ivr.media.tts import Synthesizer, TtsCache

SENTENCE = "Xin chào quý khách, cảm ơn quý khách đã gọi đến tổng đài hỗ trợ."
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def synth():
    return Synthesizer("north")


def _seconds(x: np.ndarray, rate: int) -> float:
    return len(x) / rate


def _espeak_cli_seconds(tmp_path: Path, voice: str, wpm: int, text: str) -> float:
    out = tmp_path / f"cli-{voice}-{wpm}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(out), text], check=True, timeout=60)
    info = sf.info(out)
    return info.frames / info.samplerate


@pytest.mark.parametrize("rate", [8000, 16000, 22050])
def test_renders_vietnamese_at_the_requested_rate(synth, rate):
    native, native_rate = synth.render_native(SENTENCE)
    x = synth.render(SENTENCE, rate)
    assert x.dtype == np.int16 and x.ndim == 1
    assert 1.0 < _seconds(x, rate) < 10.0
    # Resampled, not relabelled: the same duration as espeak-ng's own 22050 Hz output.
    assert _seconds(x, rate) == pytest.approx(_seconds(native, native_rate), abs=0.05)
    assert dbfs(x) > -30.0, "no speech energy"  # silence is -inf; espeak-ng speech is around -15 dBFS
    # Speech has pauses: the quietest 20 ms frames are far below the loudest.
    frames = x[: len(x) // (rate // 50) * (rate // 50)].reshape(-1, rate // 50).astype(np.float64)
    rms = np.sqrt((frames**2).mean(axis=1))
    assert rms.max() > 50 * (np.percentile(rms, 5) + 1)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_a_play_starts_with_at_most_10_ms_of_silence(synth, rate):
    """espeak-ng starts "Quý khách..." with ~70 ms of digital silence (the closure of its first consonant): dead
    air after every key that opens a topic menu. The rendering keeps 10 ms of it, and nothing of the speech."""
    from ivr.media.tts import LEAD_FLOOR, LEAD_MS

    text = "Quý khách đã chọn mật khẩu và mã PIN."
    native, native_rate = synth.render_native(text)
    lead = np.flatnonzero(np.abs(native.astype(np.int32)) > LEAD_FLOOR)[0] / native_rate
    assert lead > 0.04  # the engine's own silence, which the test is about
    x = synth.render(text, rate, raw=True)  # as given, like render_native
    first = np.flatnonzero(np.abs(x.astype(np.int32)) > LEAD_FLOOR)[0] / rate
    assert first <= LEAD_MS / 1000 + 0.002
    # only silence went: the rest is as long as the engine's speech after its own lead
    assert _seconds(x, rate) == pytest.approx(_seconds(native, native_rate) - lead + first, abs=0.01)


def test_resampled_audio_has_no_energy_above_nyquist_of_the_phone_rate(synth):
    x = synth.render(SENTENCE, 8000).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / 8000)
    speech = spectrum[(freqs > 200) & (freqs < 3400)].sum()
    assert speech > 0.8 * spectrum.sum()


def test_voices_differ(synth):
    audio = {v: Synthesizer(v).render(SENTENCE, 16000) for v in ("north", "central", "south")}
    for a, b in [("north", "central"), ("north", "south"), ("central", "south")]:
        x, y = audio[a], audio[b]
        n = min(len(x), len(y))
        assert len(x) != len(y) or not np.array_equal(x, y), f"{a} and {b} sound the same"
        diff = np.abs(x[:n].astype(np.int32) - y[:n].astype(np.int32)).mean()
        assert diff > 100, f"{a} and {b} are nearly identical"


def test_rate_wpm_changes_duration():
    slow = Synthesizer("north", rate_wpm=100).render(SENTENCE, 16000)
    fast = Synthesizer("north", rate_wpm=300).render(SENTENCE, 16000)
    assert _seconds(slow, 16000) > 1.8 * _seconds(fast, 16000)


def test_voice_and_rate_apply_on_every_render_like_the_espeak_command(tmp_path):
    """pyttsx3's driver could drop a rate change after a voice change (espeak-ng's queue cancelled in
    runAndWait). Alternate voices and rates and compare each render with the espeak-ng command."""
    text = "Xin chào bạn, tôi có thể giúp gì cho bạn hôm nay"
    plan = [("north", 175), ("north", 100), ("south", 100), ("south", 300), ("north", 300),
            ("central", 175), ("north", 175), ("north", 100)]
    for voice, wpm in plan:
        got = Synthesizer(voice, rate_wpm=wpm).render(text, 22050, raw=True)
        want = _espeak_cli_seconds(tmp_path, tts.VOICES[voice], wpm, text)
        assert _seconds(got, 22050) == pytest.approx(want, rel=0.05), (voice, wpm)


def test_volume_scales_level():
    loud = Synthesizer("north", volume=1.0).render(SENTENCE, 16000)
    quiet = Synthesizer("north", volume=0.25).render(SENTENCE, 16000)
    assert dbfs(loud) - dbfs(quiet) > 6.0


def test_spoken_form_is_what_is_synthesised(synth):
    with_digits = synth.render("Quá 48h", 16000)
    spelled = synth.render("Quá bốn mươi tám giờ.", 16000, raw=True)
    assert _seconds(with_digits, 16000) == pytest.approx(_seconds(spelled, 16000), rel=0.03)
    raw_digits = synth.render("Quá 48h", 16000, raw=True)
    assert not np.array_equal(with_digits[: len(raw_digits)], raw_digits[: len(with_digits)])


def test_every_faq_answer_renders(faq, synth):
    for entry in faq.entries:
        x = synth.render(spoken_answer(entry), 8000)
        words = len(spoken_answer(entry).split())
        assert words / 6 < _seconds(x, 8000) < words, entry.id  # 1-6 words a second
        assert dbfs(x) > -30.0, entry.id


def test_blank_text_is_silence_without_the_engine(synth):
    calls = synth.engine_calls
    assert synth.render("   ", 8000).size == 0
    assert synth.render("", 16000).size == 0
    assert synth.engine_calls == calls


def test_no_chatter_on_stdout_or_stderr(capfd, synth):
    synth.render(SENTENCE, 8000)
    Synthesizer("south").render("Xin chào", 16000)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_no_chatter_in_a_fresh_process(tmp_path):
    """The first engine start and the driver's own print() happen here, on the real file descriptors."""
    code = ("from ivr.media.tts import Synthesizer\n"
            "x = Synthesizer('central').render('Xin chào quý khách', 8000)\n"
            "print('samples', len(x) > 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "samples True\n"
    assert done.stderr == ""


def test_concurrent_renders_are_serialised(synth):
    want = synth.render(SENTENCE, 8000)
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(synth.render(SENTENCE, 8000))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 4
    for x in results:
        assert _seconds(x, 8000) == pytest.approx(_seconds(want, 8000), abs=0.02)


# --- cache -----------------------------------------------------------------------------------------


def test_cache_hit_returns_identical_samples_without_the_engine(tmp_path):
    synth = Synthesizer("north")
    cache = TtsCache(synth, tmp_path)
    first = cache.get("Quá 48h thì làm thế nào?", 8000)
    assert synth.engine_calls == 1
    assert len(list(tmp_path.rglob("*.wav"))) == 1
    again = cache.get("Quá 48h thì làm thế nào?", 8000)
    assert again is first and synth.engine_calls == 1 and cache.hits_memory == 1
    # A new cache over the same directory reads the WAV file: same samples, still no engine call.
    fresh = TtsCache(synth, tmp_path)
    from_disk = fresh.get("Quá 48h thì làm thế nào?", 8000)
    assert np.array_equal(from_disk, first) and synth.engine_calls == 1 and fresh.hits_disk == 1
    # Another rate is another entry.
    cache.get("Quá 48h thì làm thế nào?", 16000)
    assert synth.engine_calls == 2
    with pytest.raises(ValueError):
        first[0] = 1  # shared arrays are read-only
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".wav"], "temporary files left"


def test_cache_key_covers_text_voice_rate_and_speed(tmp_path):
    north = TtsCache(Synthesizer("north"), tmp_path)
    keys = {
        north.key("Xin chào", 8000),
        north.key("Xin chào", 16000),
        north.key("Xin chào bạn", 8000),
        TtsCache(Synthesizer("south"), tmp_path).key("Xin chào", 8000),
        TtsCache(Synthesizer("north", rate_wpm=120), tmp_path).key("Xin chào", 8000),
    }
    assert len(keys) == 5
    # Texts with the same spoken form share an entry.
    assert north.key("Dùng 2 thiết bị", 8000) == north.key("Dùng hai thiết bị.", 8000)
    assert "espeak-ng" in Synthesizer("north").engine_version


def test_damaged_cache_file_is_rendered_again(tmp_path):
    synth = Synthesizer("north")
    cache = TtsCache(synth, tmp_path)
    good = cache.get("Xin chào", 8000)
    path = cache.path_for(cache.key("Xin chào", 8000))
    path.write_bytes(b"RIFF not really")
    again = TtsCache(synth, tmp_path).get("Xin chào", 8000)
    assert synth.engine_calls == 2
    assert len(again) == pytest.approx(len(good), abs=80)
    assert sf.info(path).samplerate == 8000


def test_render_all_counts(tmp_path):
    synth = Synthesizer("north")
    cache = TtsCache(synth, tmp_path)
    texts = ["Xin chào", "Tạm biệt", "Xin chào"]
    assert cache.render_all(texts, 8000, progress=False) == {"texts": 2, "rendered": 2, "cached": 0}
    assert cache.render_all(texts, 8000, progress=False) == {"texts": 2, "rendered": 0, "cached": 2}
    assert synth.engine_calls == 2


# --- bad input and missing pieces ------------------------------------------------------------------


def test_missing_espeak_command_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(IvrError) as exc:
        tts.check_espeak()
    assert "espeak-ng" in exc.value.problem and "apt-get install espeak-ng" in exc.value.fix


def test_missing_espeak_library_names_the_install(monkeypatch):
    monkeypatch.setattr(tts, "_espeak_library_loadable", lambda: False)
    with pytest.raises(IvrError) as exc:
        tts.check_espeak()
    assert "libespeak-ng" in exc.value.problem and "apt-get install espeak-ng" in exc.value.fix


def test_ivr_say_without_espeak_on_path_exits_2_with_the_fix(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "ivr", "say", "Xin chào", "--out", str(tmp_path / "a.wav")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert done.returncode == 2
    assert "apt-get install espeak-ng" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"voice": "hanoi"}, "unknown voice"), ({"rate_wpm": 20}, "out of range"),
     ({"rate_wpm": "fast"}, "out of range"), ({"volume": 3}, "out of range")],
)
def test_bad_settings_are_ivr_errors(kwargs, words):
    with pytest.raises(IvrError, match=words):
        Synthesizer(**kwargs)


def test_bad_sample_rate_is_an_ivr_error(synth):
    with pytest.raises(IvrError, match="sample rate"):
        synth.render("Xin chào", 100)


def test_voice_names():
    assert [tts.resolve_voice(v) for v in ("north", "central", "south")] == list(tts.VOICES.values())
    assert tts.resolve_voice("vi-vn-x-south") == "vi-vn-x-south"
    assert tts.resolve_voice("aav/vi") == "vi"
    assert set(tts.installed_voices()) >= set(tts.VOICES.values())


# --- commands --------------------------------------------------------------------------------------


def test_ivr_say_writes_a_wav(tmp_path, capsys):
    out = tmp_path / "reply.wav"
    assert main(["say", "Quá 48h thì làm thế nào?", "--out", str(out), "--rate", "8000",
                 "--voice", "south", "--wpm", "150"]) == 0
    info = sf.info(out)
    assert info.samplerate == 8000 and info.channels == 1 and info.subtype == "PCM_16"
    assert 1.0 < info.duration < 10.0
    stat = subprocess.run(["sox", str(out), "-n", "stat"], capture_output=True, text=True, timeout=60).stderr
    rms = float(next(line.split(":")[1] for line in stat.splitlines() if line.startswith("RMS     amplitude")))
    assert rms > 0.02, stat  # -34 dBFS; silence is 0
    assert "reply.wav" in capsys.readouterr().out


def test_ivr_say_show_prints_the_spoken_form(tmp_path, capsys):
    assert main(["say", "Dùng 2 thiết bị", "--out", str(tmp_path / "a.wav"), "--show"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "Dùng hai thiết bị."


def test_ivr_say_without_a_sound_device_says_so(capsys, no_sound_devices):
    assert main(["say", "Xin chào"]) == 2
    err = capsys.readouterr().err
    assert "no sound output device" in err and "--out reply.wav" in err


def test_ivr_say_bad_input(capsys, tmp_path):
    assert main(["say", "  ", "--out", str(tmp_path / "a.wav")]) == 2
    assert "nothing to say" in capsys.readouterr().err
    assert main(["say", "Xin chào", "--out", str(tmp_path / "no" / "such" / "dir" / "a.wav")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_prompts_render_fills_the_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IVR_CACHE_DIR", str(tmp_path))
    assert main(["prompts", "render", "--rate", "8000", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "answers: 14 FAQ answers" in out
    files = list((tmp_path / "tts").rglob("*.wav"))
    assert len(files) > 14
    assert main(["prompts", "render", "--rate", "8000", "--quiet"]) == 0
    again = capsys.readouterr().out
    assert " 0 rendered" in again
    assert all(sf.info(f).samplerate == 8000 for f in files)


def test_prompt_texts_walks_nested_ladders(tmp_path):
    from ivr.cli.say import prompt_texts

    (tmp_path / "vi.yaml").write_text(
        "greet: Xin chào\nno_input:\n  - Một\n  - Hai\nmenu:\n  option: Bấm phím {key}\n  tail: Nghe lại\n",
        encoding="utf-8")
    assert prompt_texts(tmp_path) == (["Xin chào", "Một", "Hai", "Nghe lại"], 1)
