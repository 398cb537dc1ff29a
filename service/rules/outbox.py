"""The MQTT outbox: what to write next, what to keep across a lost connection, what to drop.

Two bounded queues, events (``max_events``) and per-frame tracks (``max_tracks``), and the
statuses, kept as state: the latest status per topic (a stream's, the service's), never dropped.
- ``push``: a message joins its queue; a full queue drops its oldest message (returned, to count).
  A status replaces the status queued for its topic (the older one is superseded, not lost: it
  no longer says anything true), so after an outage of any length each retained status the
  broker gets is the current one.
- ``next``: the next message to write. Statuses first, then events, then tracks: a tracks message
  is written only when no event or status is queued, so an event is never overtaken by tracks
  queued after it.
  At most ``window`` messages are written and not yet done; ``next`` returns None beyond that.
- ``written(msg, ref, now)``: the client took it and will report it done under ``ref`` (its message
  id): at QoS 0 once written to the socket, at QoS 1/2 once the broker acknowledged it.
  ``done(ref)`` then takes it out for good. ``refused(msg)``: the client could not take it; it goes
  back to the front of its queue.
- ``connection_lost``: every written-but-not-done message goes back to the front of its queue, in
  its order (at-least-once: one the broker had already taken may arrive twice), a status only if
  no newer one for its topic is queued; beyond the bounds the oldest are dropped (returned, to
  count).
- ``stalled(now, timeout)``: messages are written but none has been done for ``timeout`` seconds:
  the connection is stuck (the caller reconnects).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Kind = Literal["tracks", "events", "status"]


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: Kind
    on_sent: Callable[[float], None] | None = None  # called with the wall clock once done


class Outbox:
    __slots__ = (
        "_events",
        "_inflight",
        "_progress_at",
        "_status",
        "_tracks",
        "dropped",
        "max_events",
        "max_tracks",
        "window",
    )

    def __init__(self, max_events: int, max_tracks: int, window: int = 64) -> None:
        if min(max_events, max_tracks, window) < 1:
            raise ValueError("outbox bounds and window must be >= 1")
        self.max_events = max_events
        self.max_tracks = max_tracks
        self.window = window
        self._events: deque[Message] = deque()
        self._tracks: deque[Message] = deque()
        self._status: dict[str, Message] = {}  # topic -> its latest status, oldest first
        self._inflight: dict[int, Message] = {}  # written, not yet done, in write order
        self._progress_at: float | None = None  # when something was last written or done
        self.dropped = {"tracks": 0, "events": 0}

    # ------------------------------------------------------------------ queueing
    def push(self, msg: Message) -> Message | None:
        """Queue ``msg``; returns the message dropped to make room, if any."""
        if msg.kind == "status":
            self._status.pop(msg.topic, None)  # superseded: the newest says what is true now
            self._status[msg.topic] = msg
            return None
        q, bound = (
            (self._tracks, self.max_tracks) if msg.kind == "tracks" else (self._events, self.max_events)
        )
        dropped = None
        if len(q) >= bound:
            dropped = q.popleft()
            self.dropped[_bucket(dropped)] += 1
        q.append(msg)
        return dropped

    def next(self) -> Message | None:
        """The next message to write (taken out of its queue), or None (nothing queued, or the
        window is full)."""
        if len(self._inflight) >= self.window:
            return None
        if self._status:
            return self._status.pop(next(iter(self._status)))
        if self._events:
            return self._events.popleft()
        if self._tracks:
            return self._tracks.popleft()
        return None

    def written(self, msg: Message, ref: int, now: float) -> None:
        if not self._inflight:
            self._progress_at = now
        self._inflight[ref] = msg

    def refused(self, msg: Message) -> None:
        self._requeue(msg)

    def _requeue(self, msg: Message) -> None:
        """Back to the front of its queue (a status only if nothing newer for its topic is queued)."""
        if msg.kind == "status":
            if msg.topic not in self._status:
                self._status = {msg.topic: msg, **self._status}
        else:
            (self._tracks if msg.kind == "tracks" else self._events).appendleft(msg)

    def done(self, ref: int, now: float) -> Message | None:
        """The message written under ``ref`` is out; returns it (None for a ref not in flight)."""
        msg = self._inflight.pop(ref, None)
        if msg is not None:
            self._progress_at = now
        return msg

    def connection_lost(self) -> list[Message]:
        """Written-but-not-done messages go back, first, in order; returns those dropped beyond the bounds."""
        for msg in reversed(self._inflight.values()):
            self._requeue(msg)
        self._inflight.clear()
        self._progress_at = None
        out: list[Message] = []
        for q, bound in ((self._tracks, self.max_tracks), (self._events, self.max_events)):
            while len(q) > bound:
                dropped = q.popleft()
                self.dropped[_bucket(dropped)] += 1
                out.append(dropped)
        return out

    def stalled(self, now: float, timeout: float) -> bool:
        return bool(self._inflight) and self._progress_at is not None and now - self._progress_at > timeout

    # ------------------------------------------------------------------ views
    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self._status and not self._events and not self._tracks and not self._inflight

    @property
    def window_full(self) -> bool:
        return len(self._inflight) >= self.window

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def depth(self, kind: Literal["tracks", "events"] | None = None) -> int:
        """Messages queued or in flight (of one bucket: tracks, or events and statuses)."""
        if kind is None:
            return len(self._status) + len(self._events) + len(self._tracks) + len(self._inflight)
        queued = len(self._tracks) if kind == "tracks" else len(self._events) + len(self._status)
        return queued + sum(1 for m in self._inflight.values() if _bucket(m) == kind)


def _bucket(msg: Message) -> Literal["tracks", "events"]:
    return "tracks" if msg.kind == "tracks" else "events"
