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
        # the built-in analytics: ground positions on the 40 x 20 m pitch (players roam up to the
        # frame's edge, a metre beyond the touchlines), speeds a player can run
        rows = [t for m in msgs[-20:] for t in m["tracks"] if t.get("speed") is not None]
        assert rows and all(-1 <= t["ground"][0] <= 41 and -1 <= t["ground"][1] <= 21 for t in rows)
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
