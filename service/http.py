"""HTTP API (aiohttp): metrics, health, streams, WHIP. Optional bearer token for all but health."""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.app import Service
from service.config import parse_stream
from service.errors import ConfigError, NotOwned, StreamExists, UnknownStream, WhipError
from service.liveview import LiveView, add_routes
from service.rules.analytics import parse_analytics

log = logging.getLogger(__name__)
SERVICE_KEY: web.AppKey[Any] = web.AppKey("service", object)
# The page itself carries no data (it asks the API, with the token from its URL).
OPEN_PATHS = ("/healthz", "/readyz", "/")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
    svc: Service = request.app[SERVICE_KEY]
    token = svc.settings.http.token
    # OPTIONS: a browser's CORS preflight never carries the token (it asks what is allowed).
    if token is None or request.path in OPEN_PATHS or request.method == "OPTIONS":
        resp: web.StreamResponse = await handler(request)
        return resp
    got = request.headers.get("Authorization", "")
    want = f"Bearer {token.get_secret_value()}"
    if not hmac.compare_digest(got.encode(), want.encode()):
        return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                 headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    resp = await handler(request)
    return resp


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    body = {
        "ready": svc.ready.is_set(),
        "mqtt_connected": svc.publisher.connected.is_set(),
        "streams": len(svc.streams),
    }
    return web.json_response(body, status=200 if svc.ready.is_set() else 503)


async def metrics(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    return web.Response(
        body=generate_latest(svc.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def list_streams(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    here = [svc.stream_view(s) for s in svc.streams.values()]
    # configured streams another shard serves: which one (every instance can say where a stream is)
    there = [
        {"id": sid, "shard": shard, "served_here": False} for sid, shard in sorted(svc.elsewhere.items())
    ]
    return web.json_response([{**v, "served_here": True} for v in here] + there)


async def get_stream(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    sid = request.match_info["id"]
    s = svc.streams.get(sid)
    if s is None:
        if sid in svc.elsewhere:
            return web.json_response({"error": f"stream {sid!r} is served by shard {svc.elsewhere[sid]}",
                                      "shard": svc.elsewhere[sid]}, status=404)  # fmt: skip
        return _error(404, f"no stream {sid!r}")
    return web.json_response(svc.stream_view(s))


async def add_stream(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return _error(400, 'body must be a JSON object like {"id": "cam1", "url": "rtsp://..."}')
    try:
        cfg = parse_stream(raw)
        state = await svc.add_stream(cfg)
    except ConfigError as exc:
        return _error(400, str(exc))
    except StreamExists as exc:
        return _error(409, str(exc))
    except NotOwned as exc:
        return web.json_response({"error": str(exc), "shard": exc.shard}, status=409)
    return web.json_response(svc.stream_view(state), status=201, headers={"Location": f"/streams/{cfg.id}"})


async def delete_stream(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    try:
        await svc.remove_stream(request.match_info["id"])
    except UnknownStream as exc:
        return _error(404, str(exc))
    return web.Response(status=204)


async def get_analytics(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    s = svc.streams.get(request.match_info["id"])
    if s is None:
        return _error(404, f"no stream {request.match_info['id']!r}")
    return web.json_response(s.analytics_view())


async def put_analytics(request: web.Request) -> web.Response:
    """Replace a stream's analytics (``{}`` removes them); a rejected body leaves the old ones running."""
    svc: Service = request.app[SERVICE_KEY]
    s = svc.streams.get(request.match_info["id"])
    if s is None:
        return _error(404, f"no stream {request.match_info['id']!r}")
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return _error(
            400, 'body must be a JSON object like {"zones": [...], "lines": [...], "calibration": {...}}'
        )
    try:
        s.set_analytics(parse_analytics(raw, f"stream {s.id}"))
    except ConfigError as exc:
        return _error(400, str(exc))
    log.info("stream %s: analytics replaced", s.id)
    return web.json_response(s.analytics_view())


async def post_follow(request: web.Request) -> web.Response:
    """Follow one object: ``{"box": [x, y, w, h]}`` or ``{"point": [x, y]}`` (the track under a click)."""
    svc: Service = request.app[SERVICE_KEY]
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return _error(400, 'body must be JSON: {"box": [x, y, w, h]} or {"point": [x, y]}')
    sot = raw.pop("tracker", "kcf") if isinstance(raw, dict) else "kcf"
    if sot not in ("kcf", "mil"):
        return _error(400, f"tracker {sot!r}: kcf or mil")
    try:
        session = svc.follow(request.match_info["id"], raw, sot)
    except UnknownStream as exc:
        return _error(404, str(exc))
    except ConfigError as exc:
        return _error(400, str(exc))
    return web.json_response(session.view(), status=201)


async def get_follow(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    sid = request.match_info["id"]
    if sid not in svc.streams:
        return _error(404, f"no stream {sid!r}")
    session = svc.follows.get(sid)
    if session is None:
        return _error(404, f"stream {sid!r} follows nothing (POST a box first)")
    return web.json_response(session.view())


async def delete_follow(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    sid = request.match_info["id"]
    if sid not in svc.streams:
        return _error(404, f"no stream {sid!r}")
    return web.Response(status=204) if svc.unfollow(sid) else _error(404, f"stream {sid!r} follows nothing")


def _whip_error(exc: WhipError) -> web.Response:
    return _error(exc.status, str(exc))


async def whip_post(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    sid = request.match_info["id"]
    if request.content_type != "application/sdp":
        return _error(415, "WHIP offers must be application/sdp")
    try:
        offer = await request.text()
    except UnicodeDecodeError:
        return _error(400, "the SDP offer is not valid UTF-8")
    try:
        sess = await svc.whip.publish(sid, offer)
    except WhipError as exc:
        return _whip_error(exc)
    headers = {"Location": f"/whip/{sid}/sessions/{sess.id}"}
    links = [f'<{url}>; rel="ice-server"' for url in (svc.whip.ice_servers or [])]
    resp = web.Response(status=201, text=sess.answer_sdp, content_type="application/sdp", headers=headers)
    for link in links:  # RFC 9725 4.6: the ICE servers the publisher may use, one Link each
        resp.headers.add("Link", link)
    return resp


async def whip_options(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    resp = web.Response(status=204, headers={"Allow": "OPTIONS, POST", "Accept-Post": "application/sdp"})
    for url in svc.whip.ice_servers or []:
        resp.headers.add("Link", f'<{url}>; rel="ice-server"')
    return resp


async def whip_patch(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    if request.content_type != "application/trickle-ice-sdpfrag":
        return _error(415, "PATCH bodies must be application/trickle-ice-sdpfrag (RFC 8840)")
    try:
        fragment = await request.text()
    except UnicodeDecodeError:
        return _error(400, "the SDP fragment is not valid UTF-8")
    try:
        await svc.whip.trickle(request.match_info["id"], request.match_info["session"], fragment,
                               request.headers.get("If-Match"))  # fmt: skip
    except WhipError as exc:
        return _whip_error(exc)
    return web.Response(status=204)


async def whip_delete(request: web.Request) -> web.Response:
    svc: Service = request.app[SERVICE_KEY]
    stream, session = request.match_info["id"], request.match_info.get("session")
    if not await svc.whip.end(stream, "publisher ended the session", session):
        return _error(404, f"no such WHIP session for stream {stream!r}")
    return web.Response(status=200)


STATIC = Path(__file__).parent / "static"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


#: Request bodies (stream configs, SDP offers) are small; anything bigger is refused with 413.
MAX_BODY = 256 * 1024


def make_app(svc: Service) -> web.Application:
    app = web.Application(middlewares=[auth], client_max_size=MAX_BODY)
    app[SERVICE_KEY] = svc
    app.router.add_get("/", index)
    add_routes(app, LiveView(svc))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/streams", list_streams)
    app.router.add_post("/streams", add_stream)
    app.router.add_get("/streams/{id}", get_stream)
    app.router.add_delete("/streams/{id}", delete_stream)
    app.router.add_get("/streams/{id}/analytics", get_analytics)
    app.router.add_put("/streams/{id}/analytics", put_analytics)
    app.router.add_post("/streams/{id}/follow", post_follow)
    app.router.add_get("/streams/{id}/follow", get_follow)
    app.router.add_delete("/streams/{id}/follow", delete_follow)
    app.router.add_post("/whip/{id}", whip_post)
    app.router.add_route("OPTIONS", "/whip/{id}", whip_options)
    app.router.add_delete("/whip/{id}", whip_delete)  # the current session (before sessions had a resource)
    app.router.add_delete("/whip/{id}/sessions/{session}", whip_delete)
    app.router.add_patch("/whip/{id}/sessions/{session}", whip_patch)
    return app


class HttpServer:
    """The HTTP API of a service, listening (``port`` is the bound one, also for port 0)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self.runner = runner
        self.host = host
        self.port = port

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_http(svc: Service) -> HttpServer:
    runner = web.AppRunner(make_app(svc), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, svc.settings.http.host, svc.settings.http.port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = svc.settings.http.port
    for addr in runner.addresses:  # (host, port[, flow, scope]) of each listening socket
        port = int(addr[1])
        break
    log.info("HTTP API on http://%s:%d", svc.settings.http.host, port)
    return HttpServer(runner, svc.settings.http.host, port)
