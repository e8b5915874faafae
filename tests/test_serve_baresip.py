"""baresip calls `ivr serve`: its microphone is a WAV with keypad tones (aufile), what it hears is recorded
(sndfile). The recording must hold the greeting and the answer the keys chose, as spoken by the TTS.
"""

import random
import shutil
import subprocess
import time

import numpy as np
import pytest
from sipp.harness import IvrServe, free_udp_port

from ivr.media import dtmf
from ivr.media.audio import read_audio, write_wav

pytestmark = [
    pytest.mark.realpeer,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed (apt: baresip-core)"),
]

FAQ_ID = 9
KEYS_AT = 1.5  # seconds into the call: the caller presses the keys during the greeting
CALL_SECONDS = 14


def baresip_config(directory, mic, record_dir) -> None:
    low = random.randrange(40000, 60000) & ~1
    directory.mkdir()
    (directory / "config").write_text(
        "poll_method epoll\n"
        f"sip_listen 127.0.0.1:{free_udp_port()}\n"
        "call_local_timeout 30\n"
        "audio_player aubridge,sink\n"  # no sound card: the decoded audio goes through sndfile, then nowhere
        f"audio_source aufile,{mic}\n"
        "audio_alert aubridge,sink\n"
        "ausrc_format s16\nauplay_format s16\n"
        f"rtp_ports {low}-{low + 99}\n"
        "module_path /usr/lib/baresip/modules\n"
        "module g711.so\nmodule aufile.so\nmodule aubridge.so\nmodule sndfile.so\n"
        "module_tmp account.so\nmodule_app menu.so\n"
        f"snd_path {record_dir}\n",
        encoding="utf-8",
    )
    (directory / "accounts").write_text("<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU\n", encoding="utf-8")
    (directory / "contacts").write_text("", encoding="utf-8")


def dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float(20 * np.log10(np.sqrt(np.mean(x**2)) / 32768 + 1e-12))


def best_match(recording: np.ndarray, reference: np.ndarray, around: float, search: float = 1.0) -> float:
    """Highest normalised correlation of ``reference`` with ``recording`` within ``around`` +- ``search`` s."""
    ref = reference.astype(np.float64)
    ref = ref - ref.mean()
    ref /= np.linalg.norm(ref) + 1e-9
    lo = max(0, int((around - search) * 8000))
    hi = min(len(recording), int((around + search) * 8000) + len(ref))
    seg = recording[lo:hi].astype(np.float64)
    if len(seg) < len(ref):
        return 0.0
    num = np.correlate(seg, ref, mode="valid")  # every lag, sample by sample
    windows = np.lib.stride_tricks.sliding_window_view(seg, len(ref))
    norms = np.linalg.norm(windows - windows.mean(axis=1, keepdims=True), axis=1) + 1e-9
    return float(np.max(num / norms))


def test_baresip_hears_the_greeting_and_the_chosen_answer(tmp_path):
    from ivr.channels.session import Resources
    from ivr.content.faq import load_faq
    from ivr.content.prompts import load_prompts
    from ivr.core.menu import build_menu

    keys = "".join(build_menu(load_faq(), load_prompts()).path_to(FAQ_ID))
    mic = tmp_path / "mic.wav"
    pcm = np.concatenate([np.zeros(int(KEYS_AT * 8000), np.int16),
                          dtmf.generate(keys, rate=8000, tone_ms=120, gap_ms=300),
                          np.zeros(8000 * (CALL_SECONDS + 10), np.int16)])
    write_wav(mic, pcm, 8000)
    record_dir = tmp_path / "rec"
    record_dir.mkdir()
    baresip_config(tmp_path / "baresip", mic, record_dir)
    ivr = IvrServe(tmp_path, "--model", "none")
    proc = None
    try:
        proc = subprocess.Popen(
            ["baresip", "-n", "127.0.0.1", "-f", str(tmp_path / "baresip"),
             "-e", f"/dial sip:ivr@127.0.0.1:{ivr.sip_port}", "-t", str(CALL_SECONDS)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            errors="replace")
        out, _ = proc.communicate(timeout=CALL_SECONDS + 60)
        assert "Call established" in out, out[-3000:]
        # baresip has exited: wait until the server has taken its BYE (the log ends with the hangup)
        end = time.monotonic() + 20
        while not ((logs := ivr.logs()) and logs[0] and logs[0][-1]["type"] == "hangup"):
            assert time.monotonic() < end, f"no hangup logged 20 s after baresip's BYE: {logs}"
            time.sleep(0.1)
        assert ivr.terminate() == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        ivr.stop()
    (log,) = ivr.logs()
    key_events = [e for e in log if e["type"] == "key"]
    assert "".join(e["digit"] for e in key_events) == keys
    assert [e["faq_id"] for e in log if e["type"] == "answer"] == [FAQ_ID]
    greeting = next(e for e in log if e["type"] == "play")
    answer = next(e for e in log if e["type"] == "play" and e.get("faq_id") == FAQ_ID)
    hangup = log[-1]
    assert hangup["type"] == "hangup" and hangup["by"] == "caller"
    assert answer["t"] + 2.3 < hangup["t"]  # the answer had 2.3 s to play before the caller hung up

    (heard_path,) = record_dir.glob("*-dec.wav")
    heard, rate = read_audio(heard_path)
    assert rate == 8000
    seconds = len(heard) / 8000
    # the whole call, 20 ms after 20 ms: as long as the call lasted by the server's log (baresip's -t counts
    # from its own start, so set-up time on a loaded machine shortens the call, not this match)
    assert abs(seconds - hangup["t"]) < 1.0 and seconds < CALL_SECONDS + 1, (seconds, hangup["t"])
    # speech where the greeting and the answer play, near-silence before the first prompt is queued
    assert dbfs(heard[int(0.3 * 8000) : int(KEYS_AT * 8000)]) > -30
    assert dbfs(heard[int((answer["t"] + 0.3) * 8000) : int((answer["t"] + 2.3) * 8000)]) > -30
    # and it is that speech: the TTS rendering of the logged texts is found in the recording
    tts = Resources.load(model_path="none").tts
    greet_audio = tts.get(greeting["text"], 8000)
    answer_audio = tts.get(answer["text"], 8000)
    for audio, t in ((greet_audio, greeting["t"]), (answer_audio, answer["t"])):
        for start in (0.3, 0.9):  # half-second pieces (a jitter buffer may shift the audio between them)
            piece = audio[int(start * 8000) : int((start + 0.5) * 8000)]
            assert dbfs(piece) > -35  # a piece of speech, not a pause
            score = best_match(heard, piece, t + start)
            assert score > 0.9, (t, start, score)
