"""The live view: annotated frames of a stream, only while somebody watches it.

``GET /streams/{id}/frame.jpg`` returns the latest annotated frame (boxes, IDs, trails) and marks
the stream as watched; ``GET /streams/{id}/mjpeg`` streams them as multipart JPEG (for browsers,
VLC, ffplay). A stream nobody has asked for in ``WATCH_S`` seconds costs nothing: its source stops
keeping full frames and nothing is drawn or encoded. ``GET /events/recent`` gives the last track
events of every stream for the page's event log.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from aiohttp import web

from service.app import Service
from service.media.annotate import Annotator, Overlay
from service.pipeline import StreamState
from service.rules.analytics import TrackValues
from service.sources import FrameItem
from tracker import Tracks

WATCH_S = 5.0
JPEG_QUALITY = 80
MAX_WIDTH = 960


class StreamView:
    def __init__(self, state: StreamState) -> None:
        self.state = state
        self.annotator = Annotator(class_names=state.class_names)
        self.last_request = 0.0
        self.jpeg: bytes | None = None
        self.seq = 0
        self.changed = asyncio.Event()
        self._busy = False

    def watch(self) -> None:
        self.last_request = time.monotonic()
        if self.on_frame not in self.state.listeners:
            self.state.listeners.append(self.on_frame)

    def on_frame(self, state: StreamState, item: FrameItem, tracks: Tracks) -> None:
        if time.monotonic() - self.last_request > WATCH_S:
            state.listeners.remove(self.on_frame)  # nobody watches any more: stop rendering
            self.annotator = Annotator(class_names=state.class_names)
            return
        if item.image is None or self._busy:
            self.annotator.draw_state_only(tracks)
            return
        self._busy = True
        overlay = None if state.analytics is None else Overlay.of(state.analytics)
        task = asyncio.get_running_loop().run_in_executor(None, self._render, item.image, tracks, overlay,
                                                          state.last_values)  # fmt: skip
        task.add_done_callback(self._done)

    def _render(
        self, image: np.ndarray, tracks: Tracks, overlay: Overlay | None, values: list[TrackValues] | None
    ) -> bytes:
        out: Any = self.annotator.draw(image, tracks, overlay, values)
        h, w = out.shape[:2]
        if w > MAX_WIDTH:
            out = cv2.resize(out, (MAX_WIDTH, round(h * MAX_WIDTH / w)), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return bytes(buf.tobytes()) if ok else b""

    def _done(self, fut: asyncio.Future[bytes]) -> None:
        self._busy = False
        if fut.cancelled() or fut.exception() is not None:
            return
        self.jpeg = fut.result()
        self.seq += 1
        self.changed.set()
        self.changed = asyncio.Event()


class LiveView:
    """Follows the service's streams (its ``stream_added`` / ``stream_removed`` hooks)."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.views: dict[str, StreamView] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=300)
        self.event_seq = 0
        for state in svc.streams.values():
            self.attach(state)
        svc.stream_added.append(self.attach)
        svc.stream_removed.append(self.detach)

    def attach(self, state: StreamState) -> None:
        state.event_listeners.append(self._on_event)

    def detach(self, stream_id: str) -> None:
        self.views.pop(stream_id, None)

    def _on_event(self, body: Mapping[str, object]) -> None:
        self.event_seq += 1
        self.events.append({**body, "seq": self.event_seq})

    def view(self, stream_id: str) -> StreamView | None:
        state = self.svc.streams.get(stream_id)
        if state is None:
            return None
        v = self.views.get(stream_id)
        if v is None or v.state is not state:
            v = self.views[stream_id] = StreamView(state)
        v.watch()
        return v

    # ------------------------------------------------------------------ HTTP handlers
    async def frame(self, request: web.Request) -> web.StreamResponse:
        v = self.view(request.match_info["id"])
        if v is None:
            return web.json_response({"error": f"no stream {request.match_info['id']!r}"}, status=404)
        if v.jpeg is None:
            try:
                await asyncio.wait_for(v.changed.wait(), 3.0)
            except TimeoutError:
                return web.Response(status=204, headers={"Cache-Control": "no-store"})
        return web.Response(body=v.jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def mjpeg(self, request: web.Request) -> web.StreamResponse:
        v = self.view(request.match_info["id"])
        if v is None:
            return web.json_response({"error": f"no stream {request.match_info['id']!r}"}, status=404)
        resp = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame",
                                           "Cache-Control": "no-store"})  # fmt: skip
        await resp.prepare(request)
        last = -1
        while True:
            v.watch()
            if v.seq != last and v.jpeg:
                last = v.seq
                head = (
                    f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(v.jpeg)}\r\n\r\n".encode()
                )
                try:
                    await resp.write(head + v.jpeg + b"\r\n")
                except (ConnectionResetError, RuntimeError):
                    break
            try:
                await asyncio.wait_for(v.changed.wait(), 2.0)
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break
        return resp

    async def recent_events(self, request: web.Request) -> web.Response:
        raw = request.query.get("since", "0")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            return web.json_response({"error": f"since must be an event sequence number (0 or more), got {raw[:40]!r}"},
                                     status=400)  # fmt: skip
        since = int(raw)
        return web.json_response([e for e in self.events if e["seq"] > since])


def add_routes(app: web.Application, live: LiveView) -> None:
    app.router.add_get("/streams/{id}/frame.jpg", live.frame)
    app.router.add_get("/streams/{id}/mjpeg", live.mjpeg)
    app.router.add_get("/events/recent", live.recent_events)
