"""A live source that needs nothing: ``synthetic://pitch?players=14&fps=25&seed=7&width=1280&height=720``.

Renders the procedural scene of ``service.media.synthetic`` (players moving, crossing and occluding each
other on a pitch) in real time in its own thread and hands frames to the pipeline exactly like a
live camera: letterboxed once, freshest frame wins.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from detector_client.base import InputSpec
from service.config import StreamConfig
from service.media.synthetic import Scene, pitch, render
from service.rules.sampling import Sampler
from service.sources import FrameItem, ThreadSource


def parse(url: str) -> dict[str, float]:
    q = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    out = {"players": 14.0, "fps": 25.0, "seed": 7.0, "width": 1280.0, "height": 720.0}
    for k in out:
        if k in q:
            out[k] = float(q[k])
    return out


class SyntheticSource(ThreadSource):
    def __init__(
        self,
        cfg: StreamConfig,
        spec: InputSpec,
        loop: asyncio.AbstractEventLoop,
        offer: Callable[[FrameItem], None],
        on_status: Callable[[str, str | None], None],
        on_info: Callable[[dict[str, Any]], None],
        keep_image: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(cfg, spec, loop, offer, on_status, on_info, keep_image)
        p = parse(cfg.url)
        self.fps = p["fps"]
        self.scene = Scene(
            width=int(p["width"]), height=int(p["height"]), players=int(p["players"]), seed=int(p["seed"])
        )

    def _run(self) -> None:
        self._call(self._on_info, {"fps": self.fps, "width": self.scene.width, "height": self.scene.height})
        self._call(self._on_status, "online", None)
        bg = pitch(self.scene.width, self.scene.height, seed=1)
        sampler = Sampler(self.cfg.detect_fps)
        start = time.monotonic()
        index = sample = 0
        while not self._stop.is_set():
            index += 1
            ids, boxes = self.scene.step()
            due = start + index / self.fps
            if self._stop.wait(max(0.0, due - time.monotonic())):
                break
            t0 = time.perf_counter()
            t = index / self.fps
            if not sampler.keep(t):
                continue
            sample += 1
            img = render(bg, ids, boxes)
            prepared = self.spec.prepare(img, stream=self.cfg.id, index=index)
            item = FrameItem(self.cfg.id, index, sample, t, time.time(), prepared,
                             img if self._keep_image() else None, time.perf_counter() - t0)  # fmt: skip
            self._deliver(item)
        self._finish()
