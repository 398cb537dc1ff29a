"""A WHIP publisher built on GStreamer's webrtcbin (Debian's python3-gi): a peer nobody on the team wrote.

Run with the system Python (``/usr/bin/python3``, which has the GStreamer bindings)::

    python3 loadtest/gst_whip_publisher.py --url http://host:8080/whip/cam --codec vp8 [--trickle]
        [--token T] [--seconds 10] [--width 640 --height 360 --fps 15] clip.mp4

It decodes the clip, encodes VP8 (vp8enc) or H.264 (x264enc, constrained baseline),
and publishes it over WHIP (RFC 9725): without ``--trickle`` it POSTs the offer once ICE
gathering is complete (every candidate in the SDP); with it, the offer goes out at once and each
candidate follows in a ``PATCH`` (``application/trickle-ice-sdpfrag``) to the session's Location.
After ``--seconds`` of media it DELETEs the session and exits. Prints one JSON line per step
(``posted``, ``connected``, ``done`` or ``error``) on stdout. webrtcbin uses an RSA certificate:
the peer that answers must be the DTLS server or offer RSA suites.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

ENCODERS = {
    "vp8": "vp8enc deadline=1 cpu-used=8 keyframe-max-dist=30 ! rtpvp8pay pt=96 ! "
    "application/x-rtp,media=video,encoding-name=VP8,payload=96",
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! "
    "video/x-h264,profile=constrained-baseline ! rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency ! "
    "application/x-rtp,media=video,encoding-name=H264,payload=102",
}


def once(fn: Callable[..., object], *args: object) -> None:
    """Run ``fn(*args)`` once from the GLib main loop (an idle callback that does not repeat)."""

    def call() -> bool:
        fn(*args)
        return False

    GLib.idle_add(call)


def say(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


class Publisher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.location: str | None = None
        self.pending: list[str] = []  # candidates found before the session's Location was known
        self.mid = "0"
        self.lock = threading.Lock()
        self.failed: str | None = None
        clip = args.clip.replace("\\", "\\\\").replace('"', '\\"')
        desc = (
            f'filesrc location="{clip}" ! qtdemux ! decodebin ! videoconvert ! videoscale ! '
            f"videorate ! video/x-raw,format=I420,width={args.width},height={args.height},framerate={args.fps}/1 ! "
            f"{ENCODERS[args.codec]} ! webrtcbin name=w bundle-policy=max-bundle"
        )
        self.pipe = Gst.parse_launch(desc)
        self.w = self.pipe.get_by_name("w")
        self.w.connect("on-negotiation-needed", self._negotiate)
        self.w.connect("on-ice-candidate", self._candidate)
        self.w.connect("notify::ice-gathering-state", self._gathering)
        self.w.connect("notify::connection-state", self._connection)
        self.offer_sent = False
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._bus_error)

    # ---------------------------------------------------------------- HTTP (WHIP)
    def _request(
        self, method: str, url: str, body: str | None, ctype: str | None
    ) -> tuple[int, dict[str, str], str]:
        headers = {"Content-Type": ctype} if ctype else {}
        if self.args.token:
            headers["Authorization"] = f"Bearer {self.args.token}"
        req = urllib.request.Request(url, data=body.encode() if body is not None else None, headers=headers,
                                     method=method)  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()
        except OSError as e:  # refused, unreachable, timed out
            return 0, {}, f"{method} {url}: {e}"

    def _post_offer(self) -> None:
        offer = self.w.get_property("local-description").sdp.as_text()
        if self.args.trickle:  # every candidate goes by PATCH (on-ice-candidate reports each one)
            offer = "".join(ln for ln in offer.splitlines(keepends=True) if not ln.startswith("a=candidate:"))
        status, headers, text = self._request("POST", self.args.url, offer, "application/sdp")
        if status != 201:
            self._fail(f"POST {status}: {text[:300]}")
            return
        with self.lock:
            self.location = urllib.parse.urljoin(self.args.url, headers["Location"])
            pending, self.pending = self.pending, []
        say(step="posted", status=status, location=headers["Location"], trickle=self.args.trickle,
            candidates_in_offer=offer.count("a=candidate:"))  # fmt: skip
        _, sdp = GstSdp.SDPMessage.new_from_text(text)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        self.w.emit("set-remote-description", answer, Gst.Promise.new())
        for line in pending:
            self._patch(line)

    def _patch(self, line: str) -> None:
        assert self.location is not None
        frag = f"a=mid:{self.mid}\r\n{line}\r\n" if line else f"a=mid:{self.mid}\r\na=end-of-candidates\r\n"
        status, _, text = self._request("PATCH", self.location, frag, "application/trickle-ice-sdpfrag")
        if status != 204:
            self._fail(f"PATCH {status}: {text[:300]}")

    # ---------------------------------------------------------------- webrtcbin
    def _negotiate(self, element: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(self._on_offer, None)
        element.emit("create-offer", None, promise)

    def _on_offer(self, promise: Gst.Promise, _data: object) -> None:
        promise.wait()
        reply = promise.get_reply()  # kept referenced while the offer is read from it
        offer = reply.get_value("offer")
        text = offer.sdp.as_text()
        self.mid = next((ln[6:].strip() for ln in text.splitlines() if ln.startswith("a=mid:")), "0")
        self.w.emit("set-local-description", offer, Gst.Promise.new_with_change_func(self._local_set, None))

    def _local_set(self, promise: Gst.Promise, _data: object) -> None:
        if self.args.trickle:  # the offer goes now; its candidates follow as they are found
            GLib.idle_add(self._send_offer_once)

    def _send_offer_once(self) -> bool:
        if not self.offer_sent:
            self.offer_sent = True
            self._post_offer()
        return False

    def _candidate(self, element: Gst.Element, mline: int, candidate: str) -> None:
        if not self.args.trickle:
            return
        line = f"a={candidate}" if not candidate.startswith("a=") else candidate
        with self.lock:
            if self.location is None:
                self.pending.append(line)
                return
        once(self._patch, line)

    def _gathering(self, element: Gst.Element, _pspec: object) -> None:
        state = element.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            if self.args.trickle:
                once(self._end_of_candidates)
            else:
                GLib.idle_add(self._send_offer_once)

    def _connection(self, element: Gst.Element, _pspec: object) -> None:
        state = element.get_property("connection-state")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            say(step="connected")
            GLib.timeout_add(int(self.args.seconds * 1000), self._finish)
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            once(self._fail, "WebRTC connection failed")

    def _bus_error(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        err, dbg = msg.parse_error()
        self._fail(f"GStreamer: {err.message} ({dbg})")

    # ---------------------------------------------------------------- end
    def _fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason
            say(step="error", reason=reason)
        self.loop.quit()

    def _timed_out(self) -> bool:
        self._fail("timed out")
        return False

    def _end_of_candidates(self) -> None:
        with self.lock:
            if self.location is None:  # sent after the candidates, once the POST is answered
                self.pending.append("")
                return
        self._patch("")

    def _finish(self) -> bool:
        if self.location is not None:
            status, _, _ = self._request("DELETE", self.location, None, None)
            say(step="done", delete=status)
        self.loop.quit()
        return False

    def run(self) -> int:
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add(int((self.args.seconds + 30) * 1000), self._timed_out)
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        return 1 if self.failed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clip")
    p.add_argument("--url", required=True)
    p.add_argument("--codec", choices=sorted(ENCODERS), default="vp8")
    p.add_argument("--trickle", action="store_true")
    p.add_argument("--token")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=15)
    args = p.parse_args()
    Gst.init(None)
    return Publisher(args).run()


if __name__ == "__main__":
    sys.exit(main())
