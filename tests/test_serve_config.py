"""`ivr serve` settings from config/sip.yaml: a wrong value is named with its key (exit 2, no traceback)."""


import pytest

from ivr.cli import main


@pytest.mark.parametrize("line,new,named", [
    ("t1_seconds: 0.5", "t1_seconds: fast", "t1_seconds"),
    ("max_calls: 50", "max_calls: [50]", "max_calls"),
    ("allow: []", "allow: 10.0.0.0/24", "allow"),
])
def test_bad_settings_name_their_key(home, capsys, line, new, named):
    path = home / "config" / "sip.yaml"
    text = path.read_text(encoding="utf-8")
    assert line in text
    path.write_text(text.replace(line, new), encoding="utf-8")
    assert main(["serve", "--model", "none"]) == 2
    err = capsys.readouterr().err
    line_no = text.splitlines().index(next(x for x in text.splitlines() if x.startswith(line))) + 1
    # the real file (under IVR_HOME), its line and the key
    assert f"{path}, line {line_no}: {named}" in err and "fix:" in err and "Traceback" not in err


def test_bad_grace_option_is_named(home, capsys):
    with pytest.raises(SystemExit) as exited:  # argparse checks the type of a command-line option
        main(["serve", "--grace", "soon", "--model", "none"])
    assert exited.value.code == 2
    assert "--grace" in capsys.readouterr().err
