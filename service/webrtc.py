"""WebRTC ingest over WHIP (RFC 9725, aiortc): a publisher POSTs an SDP offer to ``/whip/{stream}``.

The answer comes back in the response (201) with ``Location: /whip/{stream}/sessions/{id}``, the
session's own resource: ``DELETE`` on it ends the session, ``PATCH`` with an
``application/trickle-ice-sdpfrag`` body adds the publisher's trickled candidates (ICE restarts
are not supported: 501, start a new session). ``WhipIngest`` holds the sessions: an offer for a
stream nobody configured creates it (a live WHIP stream), a new offer for a stream replaces its
session, a stream configured with another URL refuses offers (409). Frame numbers continue across
sessions of a stream, so a publisher that comes back is tracked on from where it left.

DTLS roles: trackcast is always the DTLS server. A publisher offers ``a=setup:actpass``; aiortc
would answer ``active`` and be the DTLS client, offering only ECDHE-ECDSA suites, which a peer
with an RSA certificate (GStreamer's webrtcbin) cannot use ("no shared cipher"). Read as
``active`` before aiortc sees it, the offer makes aiortc answer ``passive``: the publisher is the
client, offers its suites, and the server's ECDSA certificate settles them. The offer given to
aiortc is the only thing changed (no aiortc internals).

Received video frames are converted and letterboxed in a worker thread and offered to the
stream like live RTSP frames (the freshest frame wins). The HTTP handlers only parse the request
and call ``WhipIngest``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from typing import Any, Protocol

from detector_client.base import Detector, InputSpec
from service.config import StreamConfig, parse_stream
from service.errors import ConfigError, WhipError
from service.media.video import prepare_frame, to_bgr
from service.pipeline import StreamState
from service.rules.sampling import Sampler
from service.sources import FrameItem

log = logging.getLogger(__name__)


def configure_ice(host_addresses: list[str] | None) -> None:
    """Offer only these addresses as ICE host candidates (process-wide; None: aioice's default).

    aiortc has no setting for this; aioice gathers host candidates through its module-level
    ``get_host_addresses(use_ipv4, use_ipv6)``, which this replaces. It is the one place that
    reaches into a dependency; ``tests/test_webrtc_ice.py`` fails loudly if aioice changes it.
    """
    import aioice.ice

    if host_addresses is None:
        return
    addrs = list(host_addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [
        a for a in addrs if (":" in a and use_ipv6) or (":" not in a and use_ipv4)
    ]


class _Service(Protocol):
    streams: dict[str, StreamState]
    detector: Detector | None

    async def add_stream(self, cfg: StreamConfig) -> StreamState: ...


def as_dtls_server(offer_sdp: str) -> str:
    """The offer with ``a=setup:actpass`` read as ``a=setup:active``, so the answerer is the DTLS server."""
    return re.sub(r"^a=setup:actpass(?=[ \t]*\r?$)", "a=setup:active", offer_sdp, flags=re.MULTILINE)


_M_VIDEO = re.compile(r"^m=video \d+ [A-Z/]+ \d+( \d+)*\r?$", re.MULTILINE)


def check_offer(sdp: str) -> None:
    """What a WebRTC offer must have before it is negotiated (aiortc answers some garbage with an
    empty session): ``v=0`` first, a video m-line, ICE credentials and a DTLS fingerprint."""
    if len(sdp) > 64 * 1024:
        raise WhipError(413, "the SDP offer is over 64 KiB")
    if not sdp.startswith("v=0"):
        raise WhipError(400, "not an SDP offer: it must start with v=0")
    if _M_VIDEO.search(sdp) is None:
        raise WhipError(400, "the SDP offer has no video (an m=video line with its payload types)")
    for attr in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"):
        if attr not in sdp:
            raise WhipError(400, f"the SDP offer has no {attr[2:-1]} (WebRTC needs ICE credentials and DTLS)")
    if any(ord(c) < 32 and c not in "\r\n\t" for c in sdp):
        raise WhipError(400, "the SDP offer holds control characters")


def _ice_credentials(sdp: str) -> tuple[str | None, str | None]:
    ufrag = re.search(r"^a=ice-ufrag:(\S+)", sdp, re.MULTILINE)
    pwd = re.search(r"^a=ice-pwd:(\S+)", sdp, re.MULTILINE)
    return (ufrag.group(1) if ufrag else None), (pwd.group(1) if pwd else None)


class WhipIngest:
    """The WHIP sessions of a service, one per stream at most."""

    def __init__(self, svc: _Service, ice_servers: list[str] | None = None) -> None:
        self.svc = svc
        self.ice_servers = ice_servers
        self.sessions: dict[str, WhipSession] = {}

    async def publish(self, stream_id: str, offer_sdp: str) -> WhipSession:
        """Take a publisher's SDP offer for ``stream_id``; returns the session (its ``answer_sdp``
        and ``id``). Raises ``WhipError``."""
        check_offer(offer_sdp)
        state = self.svc.streams.get(stream_id)
        if state is None:
            try:
                state = await self.svc.add_stream(
                    parse_stream({"id": stream_id, "url": "whip", "mode": "live"})
                )
            except ConfigError as exc:
                raise WhipError(400, str(exc)) from exc
        elif not state.cfg.is_whip:
            raise WhipError(
                409, f"stream {stream_id!r} is not a WHIP stream (its url is {state.cfg.safe_url()})"
            )
        await self.end(stream_id, "replaced by a new WHIP session")
        if self.svc.detector is None:
            raise WhipError(503, "the service is not started")
        sess = WhipSession(state, self.svc.detector.spec, self.ice_servers)
        try:
            await sess.answer(offer_sdp)
            if not sess.receives_video():
                raise ValueError(
                    "no video could be negotiated (no codec in common: trackcast takes VP8 and H.264)"
                )
        except Exception as exc:  # aiortc raises ValueError and others for SDP it cannot use
            await sess.close("bad offer")
            raise WhipError(400, f"cannot negotiate the SDP offer: {_short(exc)}") from exc
        self.sessions[stream_id] = sess
        return sess

    def session(self, stream_id: str, session_id: str | None = None) -> WhipSession:
        """The stream's current session (``session_id``: only if it is that one). Raises ``WhipError`` 404."""
        sess = self.sessions.get(stream_id)
        if sess is None or (session_id is not None and not secrets.compare_digest(sess.id, session_id)):
            raise WhipError(404, f"no such WHIP session for stream {stream_id!r}")
        return sess

    async def trickle(self, stream_id: str, session_id: str, fragment: str, if_match: str | None) -> None:
        """Add the candidates of a trickle-ice-sdpfrag (RFC 8840) to the session. Raises ``WhipError``."""
        sess = self.session(stream_id, session_id)
        ufrag, pwd = _ice_credentials(fragment)
        if (
            if_match == "*"
            or (ufrag is not None and ufrag != sess.remote_ufrag)
            or (pwd is not None and pwd != sess.remote_pwd)
        ):
            raise WhipError(501, "ICE restarts are not supported: start a new session (POST a new offer)")
        await sess.add_candidates(fragment)

    async def end(self, stream_id: str, reason: str, session_id: str | None = None) -> bool:
        """End the stream's session (``session_id``: only that one), if it has one (True)."""
        sess = self.sessions.get(stream_id)
        if sess is None or (session_id is not None and not secrets.compare_digest(sess.id, session_id)):
            return False
        del self.sessions[stream_id]
        await sess.close(reason)
        return True

    async def end_all(self, reason: str) -> None:
        for stream_id in list(self.sessions):
            await self.end(stream_id, reason)


class WhipSession:
    def __init__(self, state: StreamState, spec: InputSpec, ice_servers: list[str] | None = None) -> None:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

        self.state = state
        self.spec = spec
        self.id = secrets.token_urlsafe(16)
        self.answer_sdp = ""
        self.remote_ufrag: str | None = None
        self.remote_pwd: str | None = None
        # Explicit ICE servers: aiortc would otherwise contact a public STUN server by default.
        servers = [RTCIceServer(urls=u) for u in (ice_servers or [])]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video":
                t = asyncio.create_task(self._consume(track), name=f"whip-{state.id}")
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            st = self.pc.connectionState
            if st == "connected":
                self.state.set_status("online", None)
            elif st in ("failed", "closed"):
                await self.close("publisher disconnected" if st == "closed" else "WebRTC connection failed")

    async def answer(self, offer_sdp: str) -> str:
        from aiortc import RTCSessionDescription

        self.remote_ufrag, self.remote_pwd = _ice_credentials(offer_sdp)
        offer = RTCSessionDescription(sdp=as_dtls_server(offer_sdp), type="offer")
        await self.pc.setRemoteDescription(offer)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self.state.set_status("connecting", "WHIP session negotiated")
        self.answer_sdp = str(self.pc.localDescription.sdp)
        return self.answer_sdp

    def receives_video(self) -> bool:
        return any(t.kind == "video" and t.currentDirection in ("recvonly", "sendrecv")
                   for t in self.pc.getTransceivers())  # fmt: skip

    async def add_candidates(self, fragment: str) -> None:
        """The ``a=candidate`` lines of a trickled SDP fragment, for its ``a=mid`` (the first m-line if none)."""
        from aiortc.sdp import candidate_from_sdp

        mid: str | None = None
        for raw in fragment.splitlines():
            line = raw.strip()
            if line.startswith("a=mid:"):
                mid = line[6:]
            elif line.startswith("a=candidate:"):
                try:
                    cand = candidate_from_sdp(line[12:])
                except (ValueError, IndexError) as exc:
                    raise WhipError(400, f"malformed candidate line {line[:120]!r}") from exc
                cand.sdpMid, cand.sdpMLineIndex = mid, (0 if mid is None else None)
                await self.pc.addIceCandidate(cand)

    def _convert(self, frame: Any, index: int, sample: int, capture_ts: float) -> FrameItem:
        t0 = time.perf_counter()
        prepared = prepare_frame(frame, self.spec, stream=self.state.id, index=index)
        pts = float(frame.time) if frame.time is not None else None
        keep = to_bgr(frame) if self.state.listeners else None
        return FrameItem(
            self.state.id, index, sample, pts, capture_ts, prepared, keep, time.perf_counter() - t0
        )

    async def _consume(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        sampler = Sampler(self.state.cfg.detect_fps)
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await track.recv()
                index = self.state.next_index
                self.state.next_index += 1
                capture_ts = time.time()
                t = float(frame.time) if frame.time is not None else time.monotonic()
                if not sampler.keep(t):
                    self.state.metrics.frames_received.labels(self.state.id).inc()
                    self.state.metrics.frames_dropped.labels(self.state.id, "sampling").inc()
                    continue
                sample = self.state.next_sample
                self.state.next_sample += 1
                item = await loop.run_in_executor(None, self._convert, frame, index, sample, capture_ts)
                if self.state.state != "online":
                    self.state.set_status("online", None)
                self.state.offer(item)
        except MediaStreamError:
            await self.close("publisher ended the stream")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("WHIP stream %s failed", self.state.id)
            await self.close(f"ingest error: {type(exc).__name__}")

    async def close(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for t in list(self._tasks):
            if t is not asyncio.current_task():
                t.cancel()
        await self.pc.close()
        self.state.set_status("offline", reason)


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:300]
