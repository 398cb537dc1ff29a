"""`trackcast demo` out of the box, and its live view in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, trackcast_cmd
from tests.infra import Collector, free_port, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Demo:
    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.out = tmp / "demo.out"
        self.fh = self.out.open("w")
        self.proc = subprocess.Popen([*trackcast_cmd(), "demo", "--port", str(self.port), *args], cwd=ROOT,
                                     stdout=self.fh, stderr=subprocess.STDOUT)  # fmt: skip
        wait_for(lambda: "Ctrl-C stops" in self.text() or self.proc.poll() is not None, 60, "the demo banner")
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C
            self.proc.wait(30)
        self.fh.close()
        return int(self.proc.returncode)


def test_demo_needs_nothing_and_says_where_to_look(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    try:
        text = demo.text()
        assert f"http://127.0.0.1:{demo.port}/" in text and "/metrics" in text
        m = re.search(r"mosquitto_sub -h 127\.0\.0\.1 -p (\d+) -t 'trackcast/#' -v", text)
        assert m, text
        assert "embedded amqtt broker" in text and "detector motion" in text
        sub = Collector(int(m.group(1)))
        wait_for(lambda: len(sub.of("/tracks", "pitch")) >= 50, 30, "tracks from the embedded broker")
        sub.close()
        wait_for(lambda: demo.text().count(" fps ") >= 2, 15, "two refreshes of the console summary")
        msgs = sub.of("/tracks", "pitch")
        assert sum(len(m["tracks"]) for m in msgs[-20:]) / 20 >= 8, "most of the 14 players are tracked"
        # the built-in analytics: ground positions on the 40 x 20 m pitch, speeds a player can run.
        # The frame maps to x -0.65..40.67, y -0.59..20.62 m (touchlines 20 px inside it); the
        # smoothed position runs ahead of a player who stops sharply by up to 0.14 x speed x window
        # (README, Analytics), 0.85 m at the scene's 6 m/s: seen at the frame's bottom edge, 21.33.
        rows = [t for m in msgs[-20:] for t in m["tracks"] if t.get("speed") is not None]
        off = [
            t["ground"]
            for t in rows
            if not (-1.5 <= t["ground"][0] <= 41.5 and -1.5 <= t["ground"][1] <= 21.5)
        ]
        assert rows and not off, off
        assert 0.3 < sorted(t["speed"] for t in rows)[len(rows) // 2] < 8
        state = sub.of("/analytics", "pitch")[-1]
        assert set(state["lines"]) == {"halfway"} and set(state["zones"]) == {"left_box"}
        fps = [float(x) for x in re.findall(r"online\s+([\d.]+) fps", demo.text())]
        assert fps and fps[-1] > 20
    finally:
        code = demo.stop()
    assert code == 0 and "stopped cleanly" in demo.text()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
def test_live_view_in_headless_chromium(tmp_path: Path) -> None:
    import cv2

    demo = Demo(tmp_path)
    try:
        time.sleep(3)
        base = f"http://127.0.0.1:{demo.port}/?stream=pitch"
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chr'}",
                 "--window-size=1400,900", "--virtual-time-budget=6000"]  # fmt: skip
        dom = subprocess.run([*flags, "--dump-dom", base], capture_output=True, text=True, timeout=90)
        assert 'data-id="pitch"' in dom.stdout and "online" in dom.stdout, "the stream list shows the stream"
        shot = tmp_path / "live.png"
        subprocess.run([*flags, f"--screenshot={shot}", base], capture_output=True, timeout=90, check=True)
    finally:
        assert demo.stop() == 0
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (900, 1400)
    viewer = img[60:660, 440:1390].astype(int)  # the live view pane
    mx, mn = viewer.max(axis=2), viewer.min(axis=2)
    box_like = (mx >= 230) & (mx - mn >= 120)  # box colours: saturated and bright; pitch, kits and UI are not
    green = (
        (viewer[:, :, 1] > 100)
        & (viewer[:, :, 1] > viewer[:, :, 2] + 40)
        & (viewer[:, :, 1] > viewer[:, :, 0] + 40)
    )
    assert green.mean() > 0.3, "the pitch is shown"
    assert box_like.sum() > 1500, f"only {box_like.sum()} box-coloured pixels: no boxes drawn?"
    # boxes come in many colours (one per track ID), not one
    hues = cv2.cvtColor(viewer.astype(np.uint8), cv2.COLOR_BGR2HSV)[:, :, 0][box_like]
    assert len(np.unique(hues // 10)) >= 5
    # the analytics drawn: the halfway line (magenta, BGR 255, 80, 255) down the middle of the frame
    magenta = (viewer[:, :, 0] > 200) & (viewer[:, :, 2] > 200) & (viewer[:, :, 1] < 140)
    assert magenta.sum() > 300, f"only {magenta.sum()} line-coloured pixels: no counting line drawn?"
    assert "draw zone" in dom.stdout and "draw line" in dom.stdout, "the zone / line editor is there"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
def test_the_editor_draws_a_line_on_the_frame_and_saves_it(tmp_path: Path) -> None:
    """A real browser (Chromium over the DevTools protocol) clicks two points on the live frame,
    names the line and saves: the stream's analytics get that line, at those source pixels."""
    import asyncio
    import json
    import urllib.request

    import aiohttp

    demo = Demo(tmp_path)
    port = free_port()
    browser = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                f"--user-data-dir={tmp_path / 'chr'}", f"--remote-debugging-port={port}",
                                "--window-size=1400,900", f"http://127.0.0.1:{demo.port}/?stream=pitch"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def page_ws() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
        except OSError:
            return None
        return pages[0]["webSocketDebuggerUrl"] if pages else None

    async def drive(ws_url: str) -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
            seq = 0

            async def cdp(method: str, **params: object) -> dict:  # type: ignore[type-arg]
                nonlocal seq
                seq += 1
                await ws.send_json({"id": seq, "method": method, "params": params})
                while True:
                    msg = await ws.receive_json()
                    if msg.get("id") == seq:
                        return msg.get("result", {})  # type: ignore[no-any-return]

            async def js(expr: str) -> object:
                res = await cdp("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
                return res.get("result", {}).get("value")

            for _ in range(100):  # the frame shown, the stream's size known
                if await js(
                    "(() => { const i = document.getElementById('live'); return !!(i && i.naturalWidth && frameSize) })()"
                ):
                    break
                await asyncio.sleep(0.2)
            rect = await js("JSON.stringify(document.getElementById('live').getBoundingClientRect())")
            box = json.loads(str(rect))
            await js("document.getElementById('draw-line').click()")
            for fx in (0.25, 0.75):
                x, y = box["left"] + fx * box["width"], box["top"] + 0.5 * box["height"]
                for kind in ("mousePressed", "mouseReleased"):
                    await cdp("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
            await js("document.getElementById('shape-id').value = 'drawn'")
            await js("document.getElementById('save-shape').click()")
            for _ in range(50):
                if "saved" in str(await js("document.getElementById('edit-msg').textContent")):
                    break
                await asyncio.sleep(0.2)

    try:
        wait_for(lambda: page_ws() is not None, 30, "Chromium's DevTools endpoint")
        url = page_ws()
        assert url is not None
        asyncio.run(asyncio.wait_for(drive(url), 60))
        with urllib.request.urlopen(f"http://127.0.0.1:{demo.port}/streams/pitch/analytics", timeout=5) as r:
            view = json.load(r)
    finally:
        browser.terminate()
        browser.wait(10)
        assert demo.stop() == 0
    drawn = [ln for ln in view["config"]["lines"] if ln["id"] == "drawn"]
    assert drawn, view["config"]["lines"]
    (x1, y1), (x2, y2) = drawn[0]["points"]
    assert abs(x1 - 320) <= 4 and abs(x2 - 960) <= 4 and abs(y1 - 360) <= 4 and abs(y2 - 360) <= 4, drawn[0]
    assert [ln["id"] for ln in view["config"]["lines"]] == ["halfway", "drawn"]  # the demo's line kept
