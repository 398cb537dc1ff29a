"""Single-object trackers: follow one box from frame to frame with no detector.

``KernelizedCorrelationFilter`` (the default) is a kernelized correlation filter (KCF: Henriques
et al., "High-Speed Tracking with Kernelized Correlation Filters", TPAMI 2015) on grey-level and
gradient-magnitude features with a Gaussian kernel and a three-scale search, in numpy: about a
millisecond a frame whatever the frame size (it works on a fixed-size patch around the target).
``OpenCvTracker`` wraps a tracker of OpenCV's tracking API (``TrackerMIL``, in opencv-python; the
contrib trackers where that build is installed). Each ``update`` returns the new box and a
confidence (the filter's peak-to-sidelobe ratio), or ``None`` when the target is lost.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
F = npt.NDArray[np.float32]
C = npt.NDArray[np.complex64]


class SingleObjectTracker(Protocol):
    def init(self, image: npt.NDArray[np.uint8], box: Box) -> None: ...
    def update(self, image: npt.NDArray[np.uint8]) -> tuple[Box, float] | None: ...


class KernelizedCorrelationFilter:
    def __init__(self, template: int = 64, padding: float = 1.5, sigma: float = 0.5, lam: float = 1e-4,
                 rate: float = 0.075, target_sigma: float = 0.1, min_psr: float = 5.0,
                 scales: tuple[float, ...] = (0.96, 1.0, 1.04)) -> None:  # fmt: skip
        self.template, self.padding, self.sigma, self.lam, self.rate = template, padding, sigma, lam, rate
        self.target_sigma, self.min_psr, self.scales = target_sigma, min_psr, scales
        self._model_xf: C | None = None

    # --------------------------------------------------------------------------- features
    def _patch(self, image: npt.NDArray[np.uint8], cx: float, cy: float, w: float, h: float) -> F:
        """Grey and gradient-magnitude channels of the padded window around (cx, cy), resized to the template."""
        import cv2

        ww, wh = w * (1 + self.padding), h * (1 + self.padding)
        m = np.array([[self.tw / ww, 0, self.tw / 2 - cx * self.tw / ww],
                      [0, self.th / wh, self.th / 2 - cy * self.th / wh]], np.float32)  # fmt: skip
        p = cv2.warpAffine(
            image, m, (self.tw, self.th), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        if p.ndim == 2:
            lab = p.astype(np.float32)[..., None] / 255.0
        else:  # colour tells players of two teams apart where grey levels do not
            lab = cv2.cvtColor(p, cv2.COLOR_BGR2LAB).astype(np.float32) / 255.0
        g = np.ascontiguousarray(lab[..., 0])
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
        chans = [lab[..., k] - lab[..., k].mean() for k in range(lab.shape[2])]
        feats = np.stack([*chans, np.sqrt(gx * gx + gy * gy)], 0)
        return (feats * self.window).astype(np.float32)

    def _correlation(self, xf: C, zf: C) -> C:
        """The Gaussian kernel between every cyclic shift of two feature maps, in the Fourier domain."""
        n = xf.shape[1] * xf.shape[2]
        xx = float(np.real(xf * np.conj(xf)).sum()) / n
        zz = float(np.real(zf * np.conj(zf)).sum()) / n
        xz = np.real(np.fft.ifft2((xf * np.conj(zf)).sum(0)))
        d = np.maximum(0.0, (xx + zz - 2 * xz) / (n * xf.shape[0]))
        return np.fft.fft2(np.exp(-d / (self.sigma**2))).astype(np.complex64)

    # --------------------------------------------------------------------------- interface
    def init(self, image: npt.NDArray[np.uint8], box: Box) -> None:
        x1, y1, x2, y2 = box
        self.w, self.h = max(4.0, x2 - x1), max(4.0, y2 - y1)
        self.cx, self.cy = (x1 + x2) / 2, (y1 + y2) / 2
        aspect = self.w / self.h
        self.tw = int(self.template * min(1.0, aspect)) // 2 * 2 or 2
        self.th = int(self.template * min(1.0, 1 / aspect)) // 2 * 2 or 2
        self.tw, self.th = max(16, self.tw), max(16, self.th)
        self.window = np.outer(np.hanning(self.th), np.hanning(self.tw)).astype(np.float32)
        s = np.sqrt(self.tw * self.th) / (1 + self.padding) * self.target_sigma
        ys, xs = np.mgrid[0 : self.th, 0 : self.tw]
        ys = (ys - self.th // 2).astype(np.float32)
        xs = (xs - self.tw // 2).astype(np.float32)
        y = np.exp(-0.5 * (xs**2 + ys**2) / s**2)
        self._yf = np.fft.fft2(np.fft.ifftshift(y)).astype(np.complex64)
        xf = np.fft.fft2(self._patch(image, self.cx, self.cy, self.w, self.h)).astype(np.complex64)
        self._model_xf = xf
        self._alphaf = self._yf / (self._correlation(xf, xf) + self.lam)

    def update(self, image: npt.NDArray[np.uint8]) -> tuple[Box, float] | None:
        if self._model_xf is None:
            raise RuntimeError("init first")
        best: tuple[float, float, int, int, float] | None = None
        for s in self.scales:
            zf = np.fft.fft2(self._patch(image, self.cx, self.cy, self.w * s, self.h * s)).astype(
                np.complex64
            )
            resp = np.real(np.fft.ifft2(self._alphaf * self._correlation(zf, self._model_xf)))
            iy, ix = (int(v) for v in np.unravel_index(int(np.argmax(resp)), resp.shape))
            peak = float(resp[iy, ix])
            if best is None or peak > best[0]:
                best = (peak, s, iy, ix, _psr(resp, iy, ix))
        assert best is not None
        _peak, s, iy, ix, psr = best
        if psr < self.min_psr:
            return None
        dy = iy - self.th if iy > self.th // 2 else iy
        dx = ix - self.tw if ix > self.tw // 2 else ix
        self.w, self.h = self.w * s, self.h * s
        self.cx += dx * self.w * (1 + self.padding) / self.tw
        self.cy += dy * self.h * (1 + self.padding) / self.th
        xf = np.fft.fft2(self._patch(image, self.cx, self.cy, self.w, self.h)).astype(np.complex64)
        alphaf = self._yf / (self._correlation(xf, xf) + self.lam)
        r = self.rate
        self._model_xf = ((1 - r) * self._model_xf + r * xf).astype(np.complex64)
        self._alphaf = ((1 - r) * self._alphaf + r * alphaf).astype(np.complex64)
        return (self.cx - self.w / 2, self.cy - self.h / 2, self.cx + self.w / 2, self.cy + self.h / 2), psr


def _psr(resp: npt.NDArray[Any], iy: int, ix: int, exclude: int = 5) -> float:
    """Peak-to-sidelobe ratio: how far the peak stands above the rest of the response."""
    mask = np.ones(resp.shape, bool)
    ys = np.arange(iy - exclude, iy + exclude + 1) % resp.shape[0]
    xs = np.arange(ix - exclude, ix + exclude + 1) % resp.shape[1]
    mask[np.ix_(ys, xs)] = False
    side = resp[mask]
    return float((resp[iy, ix] - side.mean()) / (side.std() + 1e-6))


class OpenCvTracker:
    """A tracker of OpenCV's tracking API by name: ``mil`` (opencv-python), ``kcf``/``csrt`` (contrib builds)."""

    def __init__(self, name: str = "mil") -> None:
        import cv2

        factory = getattr(cv2, f"Tracker{name.upper() if name != 'mil' else 'MIL'}_create", None)
        if factory is None:
            raise ValueError(f"OpenCV {cv2.__version__} has no {name} tracker here (opencv-python has mil)")
        self._factory = factory
        self._t: Any = None

    def init(self, image: npt.NDArray[np.uint8], box: Box) -> None:
        x1, y1, x2, y2 = box
        self._t = self._factory()
        self._t.init(image, (int(x1), int(y1), max(1, int(x2 - x1)), max(1, int(y2 - y1))))

    def update(self, image: npt.NDArray[np.uint8]) -> tuple[Box, float] | None:
        ok, (x, y, w, h) = self._t.update(image)
        return ((float(x), float(y), float(x + w), float(y + h)), 1.0) if ok else None


def create(name: str = "kcf") -> SingleObjectTracker:
    if name == "kcf":
        return KernelizedCorrelationFilter()
    return OpenCvTracker(name.removeprefix("opencv-"))
