"""Bad input, as a new user gives it: odd audio files, broken data and settings files, junk options.

Every bad file is made here, in the test (a hidden corpus: nothing checked in to tune against). Each case
asserts what the user must get: exit status 2 (or 0 with a one-line warning where the input is usable),
no traceback and no library noise, a message that names the problem (the real file under IVR_HOME, its
line, entry and field) and the fix, and nothing half-written.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr.cli import main
from ivr.media import audio, dtmf

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], capfd) -> tuple[int, str, str]:
    """Run ``ivr ARGV`` in this process; (exit status, stdout, stderr) as the file descriptors saw them
    (C libraries' own lines included)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: a bad option value
        code = exc.code
    out, err = capfd.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and "RuntimeWarning" not in err and "mpg123" not in err.lower()
    assert "fix:" in err, err
    for w in words:
        assert w.lower() in err.lower(), (w, err)


def edit(path: Path, old: str, new: str, count: int = 1) -> int:
    """Replace ``old`` by ``new`` in ``path``; returns the 1-based line where ``old`` was."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, count), encoding="utf-8")
    return line


# --- audio files --------------------------------------------------------------------------------------------

def test_random_bytes_named_wav(tmp_path, capfd):
    p = tmp_path / "noise.wav"
    p.write_bytes(np.random.default_rng(3).bytes(4000))
    code, _, err = run(["dtmf", str(p)], capfd)
    assert_clean_error(code, err, str(p), "not a sound file")
    assert "regular file" not in err


def test_mpeg_looking_bytes_keep_library_noise_off_the_terminal(tmp_path, capfd):
    p = tmp_path / "fake.wav"
    p.write_bytes(b"\xff\xfb\x90\x00" + np.random.default_rng(4).bytes(6000))  # an MPEG frame sync, then junk
    code, _, err = run(["dtmf", str(p)], capfd)
    assert_clean_error(code, err, str(p), "cannot be read as audio")
    assert len(err.strip().splitlines()) == 2  # the problem and the fix; no lines of libmpg123's own


def test_not_a_regular_file(tmp_path, capfd):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    code, _, err = run(["dtmf", str(fifo)], capfd)
    assert_clean_error(code, err, str(fifo), "not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file(tmp_path, capfd):
    p = tmp_path / "locked.wav"
    sf.write(p, np.zeros(800, np.int16), 8000)
    p.chmod(0)
    code, _, err = run(["dtmf", str(p)], capfd)
    assert_clean_error(code, err, "permission denied", "chmod")
    assert "system error" not in err.lower()


def test_nan_samples_are_named_and_treated_as_silence(tmp_path, capfd):
    keys = dtmf.generate("5", 8000, 100, 100, -10).astype(np.float32) / 32768
    x = np.concatenate([np.full(800, np.nan, np.float32), keys, np.full(80, np.inf, np.float32)])
    p = tmp_path / "nan.wav"
    sf.write(p, x, 8000, subtype="FLOAT")
    code, out, err = run(["dtmf", str(p)], capfd)
    assert code == 0 and "5" in out
    assert "ivr: warning:" in err and "not numbers" in err and "silence" in err
    assert "RuntimeWarning" not in err and "Traceback" not in err


def test_data_chunk_declaring_less_than_the_file_holds_is_said(tmp_path, capfd):
    p = tmp_path / "keys.wav"
    sf.write(p, dtmf.generate("1234", 8000, 50, 50, -10), 8000, subtype="PCM_16")  # 0.4 s
    raw = bytearray(p.read_bytes())
    at = raw.index(b"data")
    raw[at + 4: at + 8] = struct.pack("<I", 160)  # 0.01 s declared
    p.write_bytes(bytes(raw))
    code, out, err = run(["dtmf", str(p)], capfd)
    assert code == 0
    assert "ivr: warning:" in err and "declares 0.01 s" in err and "--ignore-length" in err, err


def test_many_channels_and_high_rate_read_in_bounded_blocks(tmp_path):
    p = tmp_path / "wide.wav"
    rate, channels = 192000, 32
    sf.write(p, np.zeros((rate, channels), np.int16), rate, subtype="PCM_16")
    sizes = [len(b) for b in audio.iter_blocks(p)]
    assert sum(sizes) == rate
    assert max(sizes) <= audio.BLOCK_BUDGET // channels  # never the whole file at once
    low = list(audio.iter_blocks(p, 8000))
    assert abs(sum(map(len, low)) - 8000) <= 2


@pytest.mark.parametrize("make,words", [
    (lambda p: p.write_bytes(b""), ["empty"]),
    (lambda p: p.mkdir(), ["directory"]),
    (lambda p: sf.write(p, np.zeros(0, np.int16), 8000), ["no audio"]),
])
def test_other_unusable_files(tmp_path, capfd, make, words):
    p = tmp_path / "bad.wav"
    make(p)
    for argv in (["dtmf", str(p)], ["answer", str(p), "--model", "none"]):
        code, _, err = run(argv, capfd)
        assert_clean_error(code, err, str(p), *words)


# --- options ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,option", [
    (["--tone-ms", "1e12"], "--tone-ms"),
    (["--tone-ms", "nan"], "--tone-ms"),
    (["--tone-ms", "inf"], "--tone-ms"),
    (["--gap-ms", "-5"], "--gap-ms"),
    (["--level", "nan"], "--level"),
    (["--level", "10"], "--level"),
    (["--rate", "0"], "--rate"),
])
def test_dtmf_generate_absurd_options(tmp_path, capfd, args, option):
    out = tmp_path / "keys.wav"
    code, _, err = run(["dtmf", "--generate", "1", "--out", str(out), *args], capfd)
    assert_clean_error(code, err, option)
    assert not out.exists()


def test_dtmf_generate_too_long_and_unwritable(tmp_path, capfd):
    out = tmp_path / "keys.wav"
    code, _, err = run(["dtmf", "--generate", "1" * 200, "--tone-ms", "9000", "--out", str(out)], capfd)
    assert_clean_error(code, err, "limit")
    assert not out.exists()
    code, _, err = run(["dtmf", "--generate", "1", "--out", "/proc/keys.wav"], capfd)
    assert_clean_error(code, err, "/proc/keys.wav", "cannot write")


@pytest.mark.parametrize("args,option", [
    (["--grace", "-5"], "--grace"),
    (["--grace", "nan"], "--grace"),
    (["--max-calls", "0"], "--max-calls"),
    (["--rtp-ports", "20000-20001"], "--rtp-ports"),  # one even port, 50 calls allowed
])
def test_serve_absurd_options(capfd, args, option):
    """Parsed and turned into server options as `ivr serve` does, without starting a server (were a bad value
    accepted, the test must fail, not serve forever)."""
    from ivr.cli import build_parser
    from ivr.cli.serve import options_from
    from ivr.errors import IvrError

    try:
        options_from(build_parser().parse_args(["serve", "--model", "none", *args]))
        code = 0
    except SystemExit as exc:  # argparse: the option's type refused it
        code = exc.code
    except IvrError as exc:
        print(f"ivr: error: {exc}", file=sys.stderr)
        code = 2
    _, err = capfd.readouterr()
    assert_clean_error(code, err, option)


def test_serve_localhost_is_loopback(home):
    import argparse

    from ivr.cli.serve import options_from

    fields = dict.fromkeys(("audiosocket", "max_calls", "rtp_ports", "allow", "operator_uri", "grace", "log_dir",
                            "model"))
    opts = options_from(argparse.Namespace(sip="localhost:5060", **fields))
    assert opts.sip == ("localhost", 5060)


def test_serve_blames_the_settings_file_not_an_option(home, capfd):
    line = edit(home / "config" / "sip.yaml", "sip: 127.0.0.1:5060", "sip: 127.0.0.1")
    code, _, err = run(["check"], capfd)
    assert_clean_error(code, err, f"{home / 'config' / 'sip.yaml'}, line {line}: sip")
    assert "--sip" not in err


def test_say_nothing_speakable(tmp_path, capfd):
    out = tmp_path / "e.wav"
    for text in ("😀🎉", "…!?", "\u200b "):
        code, _, err = run(["say", text, "--out", str(out)], capfd)
        assert_clean_error(code, err, "nothing to say")
        assert not out.exists()


@pytest.mark.parametrize("args,option", [
    (["--volume", "nan"], "--volume"), (["--wpm", "9000"], "--wpm"), (["--rate", "1e9"], "--rate"),
])
def test_say_absurd_options(tmp_path, capfd, args, option):
    out = tmp_path / "e.wav"
    code, _, err = run(["say", "Xin chào", "--out", str(out), *args], capfd)
    assert_clean_error(code, err, option)
    assert not out.exists()


def test_say_very_long_text_is_spoken_in_pieces(tmp_path):
    """28,000 characters in one engine call ended in a segmentation fault: run it in a child process."""
    out = tmp_path / "long.wav"
    text = ("Xin chào quý khách, đây là tổng đài hỗ trợ VNPT SmartCA. " * 500)[:28000]
    r = subprocess.run([sys.executable, "-m", "ivr", "say", text, "--out", str(out)], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert sf.info(out).duration > 600  # all of it, not the first piece


def test_call_out_checked_before_the_call(tmp_path, capfd):
    code, _, err = run(["call", str(tmp_path / "not-read-yet.wav"), "--out", "/proc/x.wav"], capfd)
    assert_clean_error(code, err, "--out /proc/x.wav", "cannot write")


def test_call_log_names_fold_vietnamese_to_ascii():
    from ivr.channels.calllog import safe_name

    assert safe_name("33 tiếng việt") == "33_tieng_viet"
    assert safe_name("Đà Nẵng@10.0.0.1") == "Da_Nang_10.0.0.1"


# --- data and settings files ---------------------------------------------------------------------------------

FIRST_ANSWER = "    answer: |2-\n"


def test_shipped_files_pass_ivr_check(home, capfd):
    code, out, err = run(["check"], capfd)
    assert code == 0, err
    assert "everything OK" in out


def test_duplicate_answer(home, capfd):
    faq = home / "faq" / "smartca.yaml"
    text = faq.read_text(encoding="utf-8")
    para = text.index("    paraphrases:")
    faq.write_text(text[:para] + "    answer: Một câu trả lời khác.\n" + text[para:], encoding="utf-8")
    line = faq.read_text(encoding="utf-8")[:para].count("\n") + 1
    for argv in (["check"], ["faq", "check"], ["ask", "quên mật khẩu"]):
        code, _, err = run(argv, capfd)
        assert_clean_error(code, err, f"{faq}, line {line}, entry 1, field 'answer'", "written twice")


def test_duplicate_topic(home, capfd):
    faq = home / "faq" / "smartca.yaml"
    text = faq.read_text(encoding="utf-8")
    para = text.index("    paraphrases:")
    faq.write_text(text[:para] + "    topic: password\n" + text[para:], encoding="utf-8")
    code, _, err = run(["faq", "check"], capfd)
    assert_clean_error(code, err, str(faq), "entry 1, field 'topic'", "written twice")


def test_answer_of_spaces_and_a_zero_width_space(home, capfd):
    faq = home / "faq" / "smartca.yaml"
    text = faq.read_text(encoding="utf-8")
    start = text.index(FIRST_ANSWER)
    end = text.index("    paraphrases:", start)
    faq.write_text(text[:start] + '    answer: "   \u200b "\n' + text[end:], encoding="utf-8")
    line = text[:start].count("\n") + 1
    code, _, err = run(["check"], capfd)
    assert_clean_error(code, err, f"{faq}, line {line}, entry 1, field 'answer'", "silence")


def test_unknown_entry_field_names_the_closest(home, capfd):
    faq = home / "faq" / "smartca.yaml"
    line = edit(faq, "    paraphrases:", "    paraphrase:")
    code, _, err = run(["faq", "check"], capfd)
    assert_clean_error(code, err, f"{faq}, line {line}", "entry 1", "paraphrase", "did you mean 'paraphrases'")


def test_dialogue_typo(home, capfd):
    path = home / "config" / "dialogue.yaml"
    line = edit(path, "max_failures: 3", "max_failure: 1")
    for argv in (["check"], ["menu"]):
        code, _, err = run(argv, capfd)
        assert_clean_error(code, err, f"{path}, line {line}", "max_failure", "did you mean 'max_failures'")


def test_nested_dialogue_typo(home, capfd):
    path = home / "config" / "dialogue.yaml"
    line = edit(path, "  yes_key:", "  yes_kye:")
    code, _, err = run(["check"], capfd)
    assert_clean_error(code, err, f"{path}, line {line}", "confirm.yes_kye", "did you mean 'yes_key'")


def test_broken_match_settings_fail_faq_check_and_menu(home, capfd):
    path = home / "config" / "match.yaml"
    old = next(ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("margin:"))
    line = edit(path, old, "margin: lots")
    code, _, err = run(["check"], capfd)
    assert_clean_error(code, err, f"{path}, line {line}", "margin")
    for argv in (["faq", "check"], ["menu"]):
        code, _, err = run(argv, capfd)
        assert_clean_error(code, err, str(path), "margin")
        assert "config/match.yaml:" not in err.replace(str(path), "")


def test_broken_tts_settings_fail_check_and_menu(home, capfd):
    path = home / "config" / "tts.yaml"
    line = edit(path, "voice: north", "voice: northern")
    for argv in (["check"], ["menu"]):
        code, _, err = run(argv, capfd)
        assert_clean_error(code, err, f"{path}, line {line}", "voice", "north, central, south")


def test_duplicate_setting(home, capfd):
    path = home / "config" / "tts.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "volume: 0.2\n", encoding="utf-8")
    code, _, err = run(["check"], capfd)
    assert_clean_error(code, err, str(path), "field 'volume'", "written twice")


def test_prompt_id_typo(home, capfd):
    path = home / "prompts" / "vi.yaml"
    line = edit(path, "\ngoodbye:", "\ngoodby:") + 1
    code, _, err = run(["check"], capfd)
    assert_clean_error(code, err, f"{path}, line {line}", "goodby", "did you mean 'goodbye'")


def test_broken_recorded_prompt(home, capfd):
    rec = home / "prompts" / "audio"
    rec.mkdir()
    sf.write(rec / "greet_long.wav", np.zeros(8000, np.int16), 8000)
    (rec / "goodbye.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    code, out, err = run(["check"], capfd)
    assert_clean_error(code, err, str(rec / "goodbye.wav"))
    assert "greet_long" not in err and "2 recordings" in out
