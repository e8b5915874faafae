"""The IVR's side of a call: a queue of plays (with their audio) and of the controls that wait behind them.

``Playout`` holds items in order: a play (``Play`` and its int16 samples, read out block by block), a
transfer, or a hang-up. A control waits until the plays queued before it have been read out. ``stop()``
drops every play at once (barge-in) and keeps the controls. No clock: the ``Call`` reads it and says when.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ivr.core.events import HangUp, Play, Transfer


@dataclass
class Item:
    """One queued thing: a ``Play`` with ``audio`` (``pos`` samples already read), a ``Transfer`` or a ``HangUp``."""

    action: Play | Transfer | HangUp
    audio: np.ndarray | None = None
    pos: int = 0

    @property
    def is_play(self) -> bool:
        return isinstance(self.action, Play)

    @property
    def left(self) -> int:
        return len(self.audio) - self.pos if self.audio is not None else 0


class Playout:
    def __init__(self):
        self.items: list[Item] = []

    @property
    def playing(self) -> bool:
        """A play is queued or sounding."""
        return any(i.is_play for i in self.items)

    def add_play(self, play: Play, audio: np.ndarray) -> None:
        self.items.append(Item(play, np.asarray(audio, dtype=np.int16)))

    def add_control(self, action: Transfer | HangUp) -> None:
        self.items.append(Item(action))

    def head(self) -> Item | None:
        return self.items[0] if self.items else None

    def pop(self) -> Item:
        return self.items.pop(0)

    def next_control(self) -> Transfer | HangUp | None:
        """The control at the head of the queue (no play before it), taken off the queue; else None."""
        if self.items and not self.items[0].is_play:
            return self.items.pop(0).action
        return None

    def stop(self) -> tuple[int | None, list[int]]:
        """Drop every play; returns (the play cut while sounding or None, the ids of all plays dropped)."""
        plays = [i for i in self.items if i.is_play]
        cut = next((i.action.play_id for i in plays if i.pos > 0), None)
        self.items = [i for i in self.items if not i.is_play]
        return cut, [i.action.play_id for i in plays]

    def clear(self) -> None:
        self.items.clear()
