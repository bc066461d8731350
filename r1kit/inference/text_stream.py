"""Text as it is generated, one sample at a time: the token ids decoded whole (as the final text
is), the reasoning (inside <think>) and the answer on separate channels, the <think> markers not
shown, and text that could be the start of a stop string held back until it is known not to be
one. `Engine.stream` and the server's streamed responses both read a sample through it, so the
deltas joined are the engine's final text for the sample.
"""

from __future__ import annotations

from typing import Sequence

from r1kit.inference.requests import FinishReason, StreamDelta


class TextStream:
    def __init__(self, tokenizer, prompt_ids: Sequence[int], stop_ids, stops: Sequence[str] = ()):
        self.tok, self.stop_ids, self.stops = tokenizer, stop_ids, tuple(stops)
        channel = "reasoning" if _inside_think(list(prompt_ids), tokenizer.think_id, tokenizer.end_think_id) else "answer"
        # the markers only record where each channel starts in the whole text, so stop strings and
        # held-back tails see across them
        self.ids: list[int] = []
        self.switches: list[tuple[int, str]] = [(0, channel)]  # (offset in the text, channel from there on)
        self.shown = 0  # characters of the text already handed out

    def feed(self, token: int, finish_reason: FinishReason | None = None,
             stop_reason: str | int | None = None) -> list[StreamDelta]:
        """The deltas that `token` makes visible (several when it crosses a channel switch; one
        empty delta at the end, to carry the finish reason, when nothing else is left)."""
        tok, finished = self.tok, finish_reason is not None
        if token not in self.stop_ids:  # a stop token is neither text nor a channel marker
            if token in (tok.think_id, tok.end_think_id):
                self.switches.append((len(tok.decode(self.ids, skip_special=True)),
                                      "reasoning" if token == tok.think_id else "answer"))
            self.ids.append(token)
        text = tok.decode(self.ids, skip_special=True)
        if not finished:  # half a UTF-8 character: wait for the rest (it may be a stop string's)
            text = text.rstrip("\ufffd")
        text = cut_at_stop(text, self.stops, finished)
        pieces = _channel_pieces(text, self.shown, self.switches)
        self.shown = max(self.shown, len(text))
        if not pieces and finished:
            pieces = [("", _channel_at(len(text), self.switches))]
        return [StreamDelta(piece, channel, token, finish_reason if k == len(pieces) - 1 else None,
                            stop_reason if k == len(pieces) - 1 else None)
                for k, (piece, channel) in enumerate(pieces)]


def _inside_think(prompt_ids: list[int], think_id: int, end_think_id: int) -> bool:
    """Does the prompt end inside a <think> block (r1kit's prompts do)?"""
    for token in reversed(prompt_ids):
        if token == end_think_id:
            return False
        if token == think_id:
            return True
    return False


def _channel_at(offset: int, switches: list[tuple[int, str]]) -> str:
    """The channel in force at `offset` of the text (the last switch at or before it)."""
    return [channel for at, channel in switches if at <= offset][-1]


def _channel_pieces(text: str, start: int, switches: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """text[start:] as (piece, channel) pieces, split where the channel changes."""
    pieces: list[tuple[str, str]] = []
    bounds = [at for at, _ in switches[1:]] + [len(text)]
    for (at, channel), end in zip(switches, bounds):
        a, b = max(at, start), min(end, len(text))
        if a < b:
            if pieces and pieces[-1][1] == channel:
                pieces[-1] = (pieces[-1][0] + text[a:b], channel)
            else:
                pieces.append((text[a:b], channel))
    return pieces


def first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """(where, which) of the stop string that starts first in `text` (the earlier listed on a tie)."""
    hits = [(i, s) for s, i in ((s, text.find(s)) for s in stops) if i >= 0]
    return min(hits, key=lambda hit: hit[0]) if hits else None


def cut_at_stop(text: str, stops: Sequence[str], finished: bool) -> str:
    """Text up to the first stop string; while generating, also hold back a tail that may be
    the start of one."""
    hit = first_stop(text, stops)
    if hit is not None:
        return text[: hit[0]]
    if not finished:
        held = max((k for s in stops for k in range(1, min(len(s) - 1, len(text)) + 1) if text.endswith(s[:k])), default=0)
        return text[: len(text) - held]
    return text
