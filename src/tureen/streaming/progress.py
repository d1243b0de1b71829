"""How far a source has got, per partition: the newest event time, from which the watermark,
and the last sequence number processed, from which replays are skipped.

The watermark is the oldest partition's newest event time minus the source's
``watermark_delay``; it only moves forward. An event dated before it is late, by how far.
An event whose sequence number (Kafka offset) is not past its partition's last one was
processed before (a replay after a restart repeats some) and is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tureen.streaming.events import Event


def lateness(
    events: Sequence[Event],
    ts: np.ndarray[Any, Any],
    newest: dict[str, int],
    watermark: int | None,
    delay_us: int,
) -> tuple[np.ndarray[Any, Any], int | None]:
    """How far behind the watermark each event arrived (µs; 0: on time), and the watermark
    after them; moves ``newest`` (each partition's newest event time) forward."""
    behind = np.zeros(len(events), dtype=np.int64)
    wm = watermark
    for i, e in enumerate(events):
        t = int(ts[i])
        if wm is not None and t < wm:
            behind[i] = wm - t
            continue
        cur = newest.get(e.partition)
        if cur is None or t > cur:
            newest[e.partition] = t
            low = min(newest.values()) - delay_us
            if wm is None or low > wm:
                wm = low
    return behind, wm


def fresh(events: Sequence[Event], seen: dict[str, int]) -> list[Event]:
    """Events not processed before; moves ``seen`` (each partition's last sequence number
    processed) forward."""
    out = []
    for e in events:
        if e.seq is not None:
            last = seen.get(e.partition)
            if last is not None and e.seq <= last:
                continue
            seen[e.partition] = e.seq
        out.append(e)
    return out
