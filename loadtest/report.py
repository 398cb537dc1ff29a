"""Self-contained HTML report of a load run: inline SVG charts, no scripts, nothing loaded from outside."""

from __future__ import annotations

import html
import math
from typing import Any

COLOURS = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 2) if start + i * step <= hi + 1e-9]


def line_chart(title: str, series: list[tuple[str, list[float], list[float]]], xlabel: str, ylabel: str,
               w: int = 620, h: int = 300) -> str:  # fmt: skip
    """An SVG line chart; ``series``: (name, xs, ys)."""
    pts = [
        (x, y)
        for _, xs, ys in series
        for x, y in zip(xs, ys, strict=True)
        if y is not None and math.isfinite(y)
    ]
    if not pts:
        return f"<figure><figcaption>{html.escape(title)}</figcaption><p>no data</p></figure>"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = 0.0, max(p[1] for p in pts) * 1.05 or 1.0
    if x1 == x0:
        x1 = x0 + 1
    ml, mr, mt, mb = 56, 12, 24, 40
    pw, ph = w - ml - mr, h - mt - mb

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return mt + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<text x="{ml}" y="14" font-size="13" font-weight="bold">{html.escape(title)}</text>']  # fmt: skip
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#ddd"/>'
                   f'<text x="{ml - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')  # fmt: skip
    for t in _ticks(x0, x1):
        out.append(f'<text x="{sx(t):.1f}" y="{mt + ph + 14}" text-anchor="middle">{t:g}</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{ml + pw / 2}" y="{h - 6}" text-anchor="middle">{html.escape(xlabel)}</text>')
    out.append(f'<text x="12" y="{mt + ph / 2}" transform="rotate(-90 12 {mt + ph / 2})" text-anchor="middle">'
               f"{html.escape(ylabel)}</text>")  # fmt: skip
    for i, (name, xs, ys) in enumerate(series):
        c = COLOURS[i % len(COLOURS)]
        step = max(1, len(xs) // 1500)  # keep the page light
        path = " ".join(
            f"{sx(x):.1f},{sy(y):.1f}" for x, y in list(zip(xs, ys, strict=True))[::step] if y is not None
        )
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{path}"/>')
        out.append(f'<rect x="{ml + 8 + 90 * (i % 6)}" y="{mt + 6 + 14 * (i // 6)}" width="10" height="10" fill="{c}"/>'
                   f'<text x="{ml + 22 + 90 * (i % 6)}" y="{mt + 15 + 14 * (i // 6)}">{html.escape(name)}</text>')  # fmt: skip
    out.append("</svg>")
    return "<figure>" + "".join(out) + "</figure>"


def _per_second(frames: list[tuple[float, float]], t0: float) -> tuple[list[float], list[float], list[float]]:
    bins: dict[int, list[float]] = {}
    for recv, lat in frames:
        bins.setdefault(int(recv - t0), []).append(lat)
    secs = sorted(bins)
    fps = [float(len(bins[s])) for s in secs]
    p50 = [sorted(bins[s])[len(bins[s]) // 2] for s in secs]
    return [float(s) for s in secs], fps, p50


def render_html(res: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    s = res["series"]
    t0 = s["t0"]
    cdf, fps_s, lat_s = [], [], []
    for sid, frames in sorted(s["frames"].items()):
        lats = sorted(lat for _, lat in frames)
        if lats:
            cdf.append((sid, lats, [(i + 1) / len(lats) for i in range(len(lats))]))
        xs, fps, p50 = _per_second(frames, t0)
        fps_s.append((sid, xs, fps))
        lat_s.append((sid, xs, p50))
    res_t = [t - t0 for t, _, _ in s["resources"]]
    cpu = [c for _, c, _ in s["resources"]]
    rss = [m for _, _, m in s["resources"]]
    rows = "".join(
        f"<tr><td>{html.escape(sid)}</td><td>{st['source_fps']:.1f}</td><td>{st['processed_fps']:.1f}</td>"
        f"<td>{100 * st['drop_rate']:.1f}</td><td>{_f(st['latency_ms']['p50'])}</td><td>{_f(st['latency_ms']['p95'])}</td>"
        f"<td>{_f(st['latency_ms']['p99'])}</td><td>{html.escape(', '.join(f'{k} {int(v)}' for k, v in st['dropped'].items()) or '-')}</td></tr>"
        for sid, st in res["streams"].items()
    )
    fm = ""
    if "find_max" in res:
        fm = (
            "<h2>--find-max</h2><table><tr><th>streams</th><th>held</th><th>p99 ms</th><th>max drop %</th></tr>"
            + "".join(
                f"<tr><td>{r['streams_n']}</td><td>{'yes' if ok else 'no'}</td><td>{_f(r['latency_ms']['p99'])}</td>"
                f"<td>{100 * r['drop_rate_max']:.1f}</td></tr>"
                for r, (_, ok) in zip(runs, res["find_max"]["tried"], strict=False)
            )
            + f"</table><p>Largest N that held: <b>{res['find_max']['largest_n']}</b></p>"
        )
    soak = ""
    if "soak" in res:
        sk = res["soak"]
        soak = (f"<h2>Soak</h2><p>RSS slope after warm-up: <b>{_f(sk['rss_slope_mb_per_hour'], 2)} MB/h</b> "
                f"(limit {sk['limit']:g} MB/h): <b>{'PASS' if sk['passed'] else 'FAIL'}</b></p>")  # fmt: skip
    det = html.escape(", ".join(f"{k}={v}" for k, v in res["detector"].items()))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>trackcast load test</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} th{{background:#f4f4f4}}
figure{{display:inline-block;margin:8px}} figcaption{{font-weight:bold}}</style></head><body>
<h1>trackcast load test: {res["streams_n"]} streams, {res["duration_s"]:g} s</h1>
<p>Detector: {det}. Machine: {res["machine"]["cores"]} cores. Latency is capture (decode in the service) to
receipt of the frame's MQTT message here. CPU is the service process (100% = one core).</p>
<table><tr><th>stream</th><th>source fps</th><th>processed fps</th><th>drop %</th><th>p50 ms</th><th>p95 ms</th>
<th>p99 ms</th><th>drops by cause</th></tr>{rows}</table>
<p>All streams: p50 {_f(res["latency_ms"]["p50"])} ms, p95 {_f(res["latency_ms"]["p95"])} ms, p99 {_f(res["latency_ms"]["p99"])} ms.
CPU mean {_f(res["cpu_percent"]["mean"], 0)}%, max {_f(res["cpu_percent"]["max"], 0)}%.
RSS {_f(res["rss_mb"]["start"], 0)} to {_f(res["rss_mb"]["end"], 0)} MB (max {_f(res["rss_mb"]["max"], 0)}),
slope after warm-up {_f(res["rss_slope_mb_per_hour"], 2)} MB/h.</p>
{soak}{fm}
{line_chart("End-to-end latency CDF", cdf, "latency (ms)", "fraction of frames")}
{line_chart("Processed fps over time", fps_s, "time (s)", "frames/s")}
{line_chart("Latency over time (p50 per second)", lat_s, "time (s)", "latency (ms)")}
{line_chart("Service CPU", [("cpu %", res_t, cpu)], "time (s)", "CPU %")}
{line_chart("Service RSS", [("RSS MB", res_t, rss)], "time (s)", "MB")}
</body></html>"""


def _f(v: float | None, d: int = 1) -> str:
    return "-" if v is None else f"{v:.{d}f}"
