"""The one renderer of a call's records as lines of text, for ``ivr call`` (``call``), ``ivr chat`` (``chat``)
and the kiosk display (``kiosk``). Records come from ``ivr.core.call.Call``, already masked."""

from __future__ import annotations

from collections.abc import Callable

STYLES = ("call", "chat", "kiosk")


def clock(t: float) -> str:
    m, s = divmod(max(0.0, t), 60.0)
    return f"{int(m):02d}:{s:05.2f}"


def _play(e: dict) -> str:
    tag = f"IVR [FAQ {e['faq_id']}]" if e.get("faq_id") is not None else "IVR"
    return f"{tag}: {e.get('text', '')}"


def _hangup_call(e: dict) -> str:
    return f"[{'IVR' if e.get('by') == 'ivr' else 'caller'} hung up]"


def _hangup_chat(e: dict) -> str:
    return f"[tổng đài kết thúc cuộc gọi: {e.get('reason')}]" if e.get("by") == "ivr" else "[quý khách gác máy]"


_Line = Callable[[dict], str | None]

_LINES: dict[str, dict[str, _Line]] = {
    "call": {
        "play": _play,
        "key": lambda e: f"caller pressed {e['digit']}",
        "heard": lambda e: f"caller said: {e['text']} (confidence {e['confidence']:.2f})",
        "stop": lambda e: f"[IVR stops talking: {e['reason']}]" if e.get("cut") is not None else None,
        "answer": lambda e: f"[answer: FAQ {e['faq_id']} via {e.get('via')}]",
        "no_match": lambda e: "[not understood]",
        "no_input": lambda e: f"[silence #{e['count']}]",
        "invalid": lambda e: f"[invalid key {e['keys']}]",
        "transfer": lambda e: f"[transfer to {e['target']}]",
        "transfer_failed": lambda e: f"[transfer failed: {e.get('reason', '')}]",
        "hangup": _hangup_call,
        "error": lambda e: f"[error in {e['where']}: {e['error']}]",
    },
    "chat": {
        "play": _play,
        "transfer": lambda e: f"[chuyển máy tới tổng đài viên ({e['target']}): bản mô phỏng dừng ở đây]",
        "hangup": _hangup_chat,
        "error": lambda e: f"[lỗi: {e['where']}: {e['error']}]",
    },
    "kiosk": {
        "play": _play,
        "heard": lambda e: f"Bạn: {e.get('text', '')}",
        "key": lambda e: f"[phím {e.get('digit')}]",
        "speech_off": lambda e: f"[{e.get('reason')}]",
        "error": lambda e: f"[lỗi: {e.get('where')}: {e.get('error')}]",
    },
}


def line(record: dict, style: str) -> str | None:
    """The record as a line in ``style`` ("call" lines start with the call time), or None when not shown."""
    fmt = _LINES[style].get(record.get("type", ""))
    text = fmt(record) if fmt is not None else None
    if text is None:
        return None
    return f"{clock(record['t'])} {text}" if style == "call" else text


def lines(records: list[dict], style: str) -> list[str]:
    return [text for text in (line(r, style) for r in records) if text is not None]
