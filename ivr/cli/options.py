"""Option values checked where they are parsed: argparse ``type=`` helpers shared by the commands.

A bad value ends the command before any work with argparse's usage line, exit status 2 and a message that
names the option, what is wrong and what to write instead, e.g.::

    ivr dtmf: error: argument --tone-ms: 1e12 is outside 1..10000 (milliseconds)
      fix: give e.g. --tone-ms 100 (within 1..10000)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
from pathlib import Path


def number(low: float, high: float, *, kind: type = float, unit: str = "", example: str = "",
           low_open: bool = False):
    """An argparse type: a finite number of ``kind`` within ``low``..``high`` (``low_open``: above ``low``)."""

    def parse(text: str):
        hint = f"\n  fix: give e.g. {example}" if example else "\n  fix: give a number in range"
        unit_text = f" ({unit})" if unit else ""
        try:
            value = kind(text)
        except (TypeError, ValueError):
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}{unit_text}{hint}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number{unit_text}{hint}")
        if (value <= low if low_open else value < low) or value > high:
            bound = f"more than {low:g} and at most {high:g}" if low_open else f"{low:g}..{high:g}"
            raise argparse.ArgumentTypeError(f"{text} is outside {bound}{unit_text}{hint} (within {bound})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def check_output(path: str | os.PathLike | None, option: str = "--out") -> Path | None:
    """Check before any work that ``path`` can be written (its directory exists and is writable, it is not
    a directory): a long run must not end in "cannot write". Raises ``IvrError``."""
    from ivr.errors import IvrError

    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise IvrError(f"{option} {p}: cannot write a file there, it is a directory", f"give a file name, e.g. {option} {p / 'out.wav'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise IvrError(f"{option} {p}: cannot write there, the directory {parent} does not exist", "create it or choose another path")
    existed = p.exists()
    try:  # the only sure test (root passes os.access everywhere, /proc refuses new files): try it
        with open(p, "r+b" if existed else "xb"):
            pass
    except OSError as exc:
        raise IvrError(f"{option} {p}: cannot write it ({exc.strerror})", "choose a writable path") from None
    finally:
        if not existed:
            with contextlib.suppress(OSError):
                p.unlink()
    return p
