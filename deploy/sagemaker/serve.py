"""``trackcast serve-model``: the SageMaker container contract (``GET /ping``, ``POST /invocations``).

Runs the serving handler of ``deploy.sagemaker.inference`` on aiohttp. The entry point of a
bring-your-own-container image (its ``serve`` command runs this) and a local endpoint for
development. Port: ``--port``, else ``SAGEMAKER_BIND_TO_PORT``, else 8080.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from deploy.sagemaker import inference

log = logging.getLogger(__name__)

#: Real-time endpoints accept 6 MiB; a little more here so the handler, not the server, says why.
#: (Videos for async endpoints are streamed to disk, without this limit.)
MAX_BODY = 8 * 1024 * 1024
MODEL_KEY: web.AppKey[Any] = web.AppKey("model", object)


def make_app(model: Any, workers: int = 1) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[MODEL_KEY] = model
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="invocations")

    async def ping(_: web.Request) -> web.Response:
        return web.Response(status=200, text="")

    async def invocations(request: web.Request) -> web.StreamResponse:
        ctype = request.headers.get("Content-Type", "")
        base = ctype.split(";")[0].strip().lower()
        if base.startswith("video/") or base in inference.VIDEO_TYPES:
            return await video_invocation(request)
        body = await request.read()
        accept = request.headers.get("Accept", "application/json")
        loop = asyncio.get_running_loop()
        status, out, out_type = await loop.run_in_executor(
            pool, inference.handle, app[MODEL_KEY], body, ctype, accept
        )
        return web.Response(status=status, body=out, content_type=out_type)

    async def video_invocation(request: web.Request) -> web.StreamResponse:
        """A whole video (async endpoints): streamed to disk and back, never held in memory."""
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory(prefix="trackcast-invocation-") as tmp:
            src = Path(tmp) / "input.video"
            size = 0
            with src.open("wb") as f:
                async for chunk in request.content.iter_chunked(1 << 20):
                    f.write(chunk)
                    size += len(chunk)
            if size == 0:
                return web.json_response({"error": "empty video body"}, status=400)
            try:
                tar = await loop.run_in_executor(
                    pool, inference.track_video_file, src, app[MODEL_KEY], Path(tmp)
                )
            except inference.RequestError as exc:
                return web.json_response({"error": exc.message}, status=exc.status)
            resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
            resp.content_length = tar.stat().st_size
            await resp.prepare(request)
            with tar.open("rb") as f:
                while chunk := f.read(1 << 20):
                    await resp.write(chunk)
            await resp.write_eof()
            return resp

    async def close_pool(_: web.Application) -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    app.router.add_get("/ping", ping)
    app.router.add_post("/invocations", invocations)
    app.on_cleanup.append(close_pool)
    return app


def port_from_env(port: int | None) -> int:
    if port:
        return port
    return int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))


def run(model: Any, host: str, port: int) -> None:
    log.info("serve-model listening on http://%s:%d (GET /ping, POST /invocations)", host, port)
    web.run_app(make_app(model), host=host, port=port, print=None, access_log=None)
