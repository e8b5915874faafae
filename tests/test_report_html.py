"""The call analytics page: its numbers are `ivr report --json`'s, it loads nothing from the network, caller
text is escaped, and headless Chromium renders it with its charts (screenshot not blank, charts in the DOM)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr.channels.calllog import CallLog
from ivr.cli import main

CALLS = Path(__file__).parent / "fixtures" / "calls"
INJECT = "đổi số điện thoại <script>document.title='pwned'</script><img src=x onerror=alert(1)>"
COMMENT = "máy in <!--<script> kẹt giấy"  # opens a comment and a script inside the page's JSON block


def _log(d: Path, name: str, records: list[dict], at: str) -> None:
    log = CallLog(d, name, "sip")
    log.close()
    first = json.loads(log.path.read_text(encoding="utf-8").splitlines()[0])
    first["at"] = at
    lines = [first] + records
    log.path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Two log directories: hand-made calls covering every figure, and a real simulated call (`ivr call`)."""
    a = tmp_path_factory.mktemp("logs-a")
    _log(a, "c1", [{"t": 5, "type": "answer", "faq_id": 3, "via": "keys"},
                   {"t": 40, "type": "hangup", "by": "caller"}], "2026-11-30T09:15:00+07:00")
    _log(a, "c2", [{"t": 4, "type": "confirm", "faq_id": 5}, {"t": 8, "type": "answer", "faq_id": 5,
                                                             "via": "confirm_voice"},
                   {"t": 20, "type": "answer", "faq_id": 3, "via": "voice"},
                   {"t": 95, "type": "hangup", "by": "ivr"}], "2026-11-30T09:40:00+07:00")
    _log(a, "c3", [{"t": 6, "type": "no_match", "text": INJECT}, {"t": 12, "type": "confirm", "faq_id": 7},
                   {"t": 15, "type": "denied", "faq_id": 7, "via": "keys"},
                   {"t": 30, "type": "operator", "reason": "caller"},
                   {"t": 33, "type": "transfer", "target": "operator"},
                   {"t": 34, "type": "transfer_failed", "reason": "busy"},
                   {"t": 50, "type": "no_input", "count": 1},
                   {"t": 70, "type": "transfer", "target": "operator"}], "2026-11-30T14:05:00+07:00")
    sf.write(a / "c3.wav", np.zeros(800, np.int16), 8000)  # the call's recording, beside its log
    _log(a, "c4", [{"t": 3, "type": "no_match", "text": INJECT}, {"t": 9, "type": "no_match", "text": COMMENT},
                   {"t": 400, "type": "hangup", "by": "caller"}], "2026-11-30T14:50:00+07:00")
    b = tmp_path_factory.mktemp("logs-b")
    assert main(["call", str(CALLS / "keys_topic2_password.wav"), "--model", "none", "--log-dir", str(b)]) == 0
    return a, b


@pytest.fixture(scope="module")
def page(logs, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "report.html"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["report", str(logs[0]), str(logs[1]), "--json", "--html", str(out)]) == 0
    return out, json.loads(buf.getvalue())


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _parse(text: str) -> _Collect:
    p = _Collect()
    p.feed(text)
    return p


def _simulated_hour(log_dir: Path) -> int:
    from datetime import datetime

    (log,) = log_dir.glob("*.jsonl")
    return datetime.fromisoformat(json.loads(log.read_text(encoding="utf-8").splitlines()[0])["at"]).hour


def test_summary_figures(page, logs):
    _, data = page
    assert data["calls"] == 5
    assert data["contained"] == 3  # c1, c2 and the simulated call answered without the operator; c3 went to it
    assert data["answers_via"]["keys"] >= 2 and data["answers_via"]["voice"] == 1
    assert data["confirmations"] == {"offered": 2, "accepted": 1, "refused": 1}
    assert data["no_match"] == 3 and data["no_match_calls"] == 2
    assert data["no_input_calls"] == 1
    assert data["transfers"] == 2 and data["transfers_failed"] == 1 and data["transfers_handed_over"] == 1
    # the simulated call is stamped with the clock's hour, which may be 9 or 14 too
    expected, hour = {9: 2, 14: 2}, _simulated_hour(logs[1])
    expected[hour] = expected.get(hour, 0) + 1
    assert {h: n for h, n in data["calls_by_hour"].items() if n} == {str(h): n for h, n in expected.items()}
    assert sum(data["call_lengths"].values()) == 5 and data["call_lengths"]["300-600s"] == 1
    assert data["unanswered"][0] == {"text": INJECT, "count": 2}
    ex = data["unanswered_examples"][INJECT]
    assert [Path(e["recording"]).name if e["recording"] else None for e in ex] == ["c3.wav", None]

    from ivr.channels.calllog import report_text

    text = report_text(data)
    assert "contained (answered, no operator): 3 (60 %)" in text and "calls with a no-match: 2 (40 %)" in text
    assert f"by keys: {data['answers_via']['keys']}" in text and "refused: 1" in text


def test_page_numbers_equal_the_json_report(page):
    path, data = page
    text = path.read_text(encoding="utf-8")
    p = _parse(text)
    embedded = json.loads(next(s for s in p.scripts if s.strip().startswith("{")))
    assert embedded == data
    tiles = {a["data-metric"]: a["data-value"] for t, a in p.tags if t == "div" and "data-metric" in a}
    for metric in ("calls", "contained", "no_match_calls", "no_input_calls", "transfers", "errors"):
        assert int(tiles[metric]) == data[metric]
    assert int(tiles["answers"]) == sum(data["answers"].values())
    bars = [a for t, a in p.tags if t == "rect" and "data-value" in a]
    answer_bars = {re.match(r"FAQ (\d+)", a["data-label"]).group(1): int(a["data-value"]) for a in bars
                   if a["data-label"].startswith("FAQ ")}
    assert answer_bars == data["answers"]
    hours = {a["data-label"]: int(a["data-value"]) for a in bars if re.fullmatch(r"\d\d", a["data-label"])}
    assert {str(int(h)): v for h, v in hours.items()} == data["calls_by_hour"]
    rows = [int(a["data-count"]) for t, a in p.tags if t == "tr" and "data-count" in a]
    assert rows == [u["count"] for u in data["unanswered"]]


def test_page_is_self_contained_and_escapes_caller_text(page):
    path, _ = page
    text = path.read_text(encoding="utf-8")
    p = _parse(text)
    assert [t for t, _ in p.tags if t == "script"] == ["script"]  # only the JSON data block
    assert not [a for t, a in p.tags if t == "img"]  # the injected <img> stayed text
    for t, a in p.tags:
        for k in ("src", "href"):
            v = a.get(k)
            if v:
                assert not re.match(r"(?i)[a-z]+:", v), (t, a)  # nothing fetched from anywhere: relative links only
    assert "@import" not in text and "url(" not in text and "<link" not in text
    assert "&lt;script&gt;" in text
    block = text[text.index('<script type="application/json"'):]
    assert block[:block.index("</script>")].count("<") == 1  # nothing inside but the JSON itself
    link = next(a["href"] for t, a in p.tags if t == "a")
    assert link.endswith("c3.wav#t=6.0") and (path.parent / link.split("#")[0]).resolve().exists()


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    assert exe, "chromium is missing: make system (Debian package chromium)"
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


def test_chromium_renders_the_page_with_its_charts(page, tmp_path):
    from PIL import Image

    path, data = page
    shot = tmp_path / "shot.png"
    r = _chromium(tmp_path, "--window-size=1280,1600", f"--screenshot={shot}", path.as_uri())
    assert shot.exists(), r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (1600, 1280)
    assert img.std() > 20  # not a blank page
    # the charts drew bars: the bar colour (#2f6fb0) covers a real area
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    bar = (np.abs(rgb - np.array([0x2F, 0x6F, 0xB0])).sum(axis=2) < 30).sum()
    assert bar > 5000, bar

    r = _chromium(tmp_path, "--dump-dom", path.as_uri())
    dom = r.stdout
    for chart in ("chart-answers", "chart-via", "chart-confirm", "chart-hours", "chart-lengths"):
        assert re.search(rf'<svg[^>]*id="{chart}"', dom), chart
    answers_svg = re.search(r'<svg[^>]*id="chart-answers".*?</svg>', dom, re.S).group(0)
    assert len(re.findall(r"<rect ", answers_svg)) == len(data["answers"])
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom).group(1)  # the injected script never ran
    assert re.search(r'<script type="application/json" id="summary">[^<]*</script>\s*</body>', dom)
