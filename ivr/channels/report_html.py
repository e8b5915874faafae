"""The call analytics page: one self-contained HTML file from the figures of ``ivr.channels.calllog.report``.

``render(data, faq=None, link_base=None)`` returns the page. It loads nothing from the network: the style
is inline and the charts are inline SVG drawn here (bars and columns; no chart library is needed for that).
Every number on the page is a field of ``data`` (what ``ivr report --json`` prints) or a ratio of two of
them, and the page carries ``data`` itself as JSON (``<script type="application/json" id="summary">``), so
a reader or a test can check the page against the report.

Definitions (see ``calllog.report``): contained = calls that got at least one answer and never went to the
operator; no-match / no-input rate = calls with at least one, over all calls; voice = answers to spoken
questions (directly or after a confirmation), keys = answers picked on the keypad.

Caller text (the unanswered questions) is escaped everywhere. Links to call recordings are written only when
``link_base`` (the directory the page is written to) is given; they are relative to it and jump to the
moment of the question (``#t=seconds``).
"""

from __future__ import annotations

import html
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

VOICE_VIA = ("voice", "confirm_voice", "confirm_keys")
KEYS_VIA = ("keys",)

_CSS = """
:root { --ink:#1d2733; --muted:#5b6775; --line:#d9dee5; --bar:#2f6fb0; --bar2:#e0813a; --ok:#2d8a4e;
        --bad:#b3402e; --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.45 "DejaVu Sans", "Noto Sans", "Liberation Sans", Arial, sans-serif; }
header { background:#1f3b57; color:#fff; padding:18px 28px; }
header h1 { margin:0; font-size:22px; font-weight:600; }
header p { margin:4px 0 0; color:#c9d6e3; font-size:13px; }
main { padding:20px 28px 40px; max-width:1180px; }
.tiles { display:grid; grid-template-columns:repeat(auto-fill, minmax(140px, 1fr)); gap:12px; margin-bottom:20px; }
.tile { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.tile .v { font-size:26px; font-weight:600; }
.tile .l { color:var(--muted); font-size:13px; }
.tile .s { color:var(--muted); font-size:12px; }
.grid { display:grid; grid-template-columns:minmax(0,1fr) minmax(0,1fr); gap:16px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:14px 16px; margin-bottom:16px; }
.grid { margin-bottom:16px; }
.grid section { margin:0; }
section h2 { margin:0 0 10px; font-size:16px; font-weight:600; }
svg.chart { width:100%; height:auto; display:block; }
svg text { font-family: inherit; fill: var(--ink); }
svg .axis { stroke: var(--line); }
svg .bar { fill: var(--bar); }
svg .bar.alt { fill: var(--bar2); }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; }
td.n { text-align:right; font-variant-numeric:tabular-nums; width:4em; }
.empty { color:var(--muted); font-style:italic; }
.note { color:var(--muted); font-size:12px; margin-top:6px; }
@media (max-width: 900px) { .grid { grid-template-columns:1fr; } }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:.1f} %" if d else "–"


def hbar_chart(chart_id: str, items: list[tuple[str, int]], title: str, width: int = 540) -> str:
    """Horizontal bars, one per (label, value)."""
    if not items:
        return f'<p class="empty" id="{_e(chart_id)}-empty">No data yet.</p>'
    row, pad = 24, 50
    label_w = max(150, int(width * 0.36))
    cut = int(label_w / 7.2)  # characters that fit at 12 px
    top = 6
    h = top + row * len(items) + 6
    vmax = max(v for _, v in items) or 1
    bw = width - label_w - pad
    parts = [f'<svg id="{_e(chart_id)}" class="chart" role="img" aria-label="{_e(title)}" width="{width}" '
             f'height="{h}" viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg">',
             f'<line class="axis" x1="{label_w}" y1="0" x2="{label_w}" y2="{h}"/>']
    for i, (label, v) in enumerate(items):
        y = top + i * row
        w = max(1.0, bw * v / vmax) if v else 0
        short = label if len(label) <= cut else label[:cut - 1] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" font-size="12">{_e(short)}'
                     f'<title>{_e(label)}</title></text>')
        parts.append(f'<rect class="bar" data-label="{_e(label)}" data-value="{v}" x="{label_w}" y="{y + 3}" '
                     f'width="{w:.1f}" height="{row - 8}"><title>{_e(label)}: {v}</title></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" font-size="12">{v}</text>')
    parts.append("</svg>")
    return "".join(parts)


def column_chart(chart_id: str, items: list[tuple[str, int]], title: str, width: int = 540,
                 height: int = 200) -> str:
    """Vertical columns, one per (label, value), labels under the axis."""
    if not items or not any(v for _, v in items):
        return f'<p class="empty" id="{_e(chart_id)}-empty">No data yet.</p>'
    left, bottom, top = 34, 34, 14
    plot_h = height - bottom - top
    plot_w = width - left - 8
    vmax = max(v for _, v in items) or 1
    col = plot_w / len(items)
    parts = [f'<svg id="{_e(chart_id)}" class="chart" role="img" aria-label="{_e(title)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{vmax}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>']
    every = 1 if len(items) <= 12 else 3
    for i, (label, v) in enumerate(items):
        x = left + i * col
        hgt = plot_h * v / vmax
        parts.append(f'<rect class="bar" data-label="{_e(label)}" data-value="{v}" x="{x + col * 0.15:.1f}" '
                     f'y="{top + plot_h - hgt:.1f}" width="{col * 0.7:.1f}" height="{hgt:.1f}">'
                     f'<title>{_e(label)}: {v}</title></rect>')
        if v:
            parts.append(f'<text x="{x + col / 2:.1f}" y="{top + plot_h - hgt - 3:.1f}" text-anchor="middle" '
                         f'font-size="11">{v}</text>')
        if i % every == 0:
            parts.append(f'<text x="{x + col / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                         f'font-size="11">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _tile(metric: str, value: Any, label: str, sub: str = "") -> str:
    return (f'<div class="tile" data-metric="{_e(metric)}" data-value="{_e(value)}"><div class="v">{_e(value)}</div>'
            f'<div class="l">{_e(label)}</div>' + (f'<div class="s">{_e(sub)}</div>' if sub else "") + "</div>")


def _faq_label(faq, faq_id: str) -> str:
    if faq is not None:
        try:
            return f"FAQ {faq_id}: {faq.by_id(int(faq_id)).question}"
        except Exception:
            pass
    return f"FAQ {faq_id}"


def _link(path: str | None, t: Any, link_base: Path | None) -> str:
    if not path:
        return ""
    name = Path(path).name
    if link_base is None:
        return f'<span class="rec">{_e(name)}</span>'
    try:
        href = os.path.relpath(path, link_base)
    except ValueError:  # another drive
        href = Path(path).resolve().as_uri()
    href = "/".join(href.split(os.sep))
    frag = f"#t={float(t):.1f}" if isinstance(t, int | float) else ""
    return f'<a class="rec" href="{_e(href)}{frag}">▶ {_e(name)}</a>'


def render(data: dict[str, Any], faq=None, link_base: Path | str | None = None, title: str = "",
           sources: list[str] | None = None) -> str:
    """The page for ``data`` (the dict of ``calllog.report``)."""
    link_base = Path(link_base) if link_base is not None else None
    calls = int(data.get("calls", 0))
    contained = int(data.get("contained", 0))
    via = data.get("answers_via", {}) or {}
    voice = sum(int(via.get(k, 0)) for k in VOICE_VIA)
    keys = sum(int(via.get(k, 0)) for k in KEYS_VIA)
    conf = data.get("confirmations", {}) or {}
    transfers = int(data.get("transfers", 0))
    completed_key = "transfers_completed" if "transfers_completed" in data else "transfers_handed_over"
    completed = int(data.get(completed_key, 0) or 0)
    answers_total = sum(int(v) for v in (data.get("answers") or {}).values())

    tiles = [
        _tile("calls", calls, "calls"),
        _tile("contained", contained, "contained (answered, no operator)", _pct(contained, calls)),
        _tile("answers", answers_total, "answers given", f"mean call {data.get('mean_call_seconds', 0)} s"),
        _tile("no_match_calls", int(data.get("no_match_calls", 0)), "calls with a no-match",
              f"{_pct(int(data.get('no_match_calls', 0)), calls)} · {data.get('no_match', 0)} no-matches in all"),
        _tile("no_input_calls", int(data.get("no_input_calls", 0)), "calls with a no-input",
              f"{_pct(int(data.get('no_input_calls', 0)), calls)} · {data.get('no_input', 0)} silences in all"),
        _tile("transfers", transfers, "transfers attempted",
              f"{completed} completed · {data.get('transfers_failed', 0)} failed"),
        _tile("errors", int(data.get("errors", 0)), "errors in calls"),
    ]

    answer_items = [(_faq_label(faq, k), int(v)) for k, v in
                    sorted((data.get("answers") or {}).items(), key=lambda kv: (-int(kv[1]), int(kv[0])))]
    via_items = [("voice (spoken question)", voice), ("keys (keypad menu)", keys)]
    conf_items = [("offered", int(conf.get("offered", 0))), ("accepted", int(conf.get("accepted", 0))),
                  ("refused", int(conf.get("refused", 0)))]
    hours = data.get("calls_by_hour", {}) or {}
    hour_items = [(f"{h:02d}", int(hours.get(str(h), 0))) for h in range(24)]
    length_items = [(k, int(v)) for k, v in (data.get("call_lengths", {}) or {}).items()]

    rows = []
    examples = data.get("unanswered_examples", {}) or {}
    for item in data.get("unanswered", []):
        links = " ".join(filter(None, (_link(ex.get("recording"), ex.get("t"), link_base)
                                       for ex in examples.get(item["text"], []))))
        rows.append(f'<tr data-count="{int(item["count"])}"><td class="n">{int(item["count"])}</td>'
                    f'<td>{_e(item["text"])}</td><td>{links}</td></tr>')
    unanswered = ('<table id="unanswered"><tr><th class="n">asked</th><th>what the caller said</th>'
                  '<th>recording</th></tr>' + "".join(rows) + "</table>") if rows else \
        '<p class="empty" id="unanswered-empty">No unanswered questions.</p>'

    # < > & as \u escapes: no caller text can close the script element or open a comment in it
    summary_json = (json.dumps(data, ensure_ascii=False, sort_keys=True)
                    .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    src = " · ".join(_e(s) for s in (sources or []))
    completed_note = ("" if completed_key == "transfers_completed" else
                      "completed = handed to the operator and not reported failed. ")
    skipped = data.get("skipped_files") or []
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title or "IVR call analytics")}</title>
<style>{_CSS}</style></head>
<body>
<header><h1>{_e(title or "VNPT SmartCA support line — call analytics")}</h1>
<p>{calls} calls · {src} · generated {_e(generated)}</p></header>
<main>
<div class="tiles">{"".join(tiles)}</div>
<section><h2>Answers per FAQ entry</h2>{hbar_chart("chart-answers", answer_items, "answers per FAQ entry", 1100)}</section>
<div class="grid">
<section><h2>Voice or keys</h2>{hbar_chart("chart-via", via_items, "answers by voice or keys")}
<p class="note">voice: {voice} ({_pct(voice, voice + keys)}) · keys: {keys} ({_pct(keys, voice + keys)})</p></section>
<section><h2>Confirmations</h2>{hbar_chart("chart-confirm", conf_items, "confirmations offered, accepted, refused")}
<p class="note">accepted {_pct(int(conf.get("accepted", 0)), int(conf.get("offered", 0)))} of those offered</p></section>
<section><h2>Calls per hour of day</h2>{column_chart("chart-hours", hour_items, "calls per hour of day")}</section>
<section><h2>Call length</h2>{column_chart("chart-lengths", length_items, "call length distribution")}</section>
</div>
<section><h2>Unanswered questions, most asked first</h2>{unanswered}</section>
<p class="note">Contained = calls that got at least one answer and never went to the operator. No-match and
no-input rates = calls with at least one, over all calls. {completed_note}Personal numbers are masked in the logs.
{f"Skipped {len(skipped)} file(s) holding no call log." if skipped else ""}</p>
</main>
<script type="application/json" id="summary">{summary_json}</script>
</body></html>
"""


def write(path: Path | str, data: dict[str, Any], faq=None, sources: list[str] | None = None) -> Path:
    """Write the page to ``path`` (links to recordings relative to its directory)."""
    from ivr.errors import IvrError

    path = Path(path)
    if path.parent and not path.parent.exists():
        raise IvrError(f"--html {path}: the directory {path.parent} does not exist", "create it or give another path")
    page = render(data, faq, link_base=path.parent.resolve(), sources=sources)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise IvrError(f"--html {path}: cannot write it ({exc.strerror or exc})", "give a writable path") from None
    return path


def write_page(path: Path | str, data: dict[str, Any], log_dirs) -> Path:
    """``write`` with the installed FAQ's questions as labels (numbers only when it cannot be loaded)."""
    try:
        from ivr.content.faq import load_faq

        faq = load_faq()
    except Exception:
        faq = None
    return write(path, data, faq, sources=[str(d) for d in log_dirs])
