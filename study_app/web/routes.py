"""HTTP routes the study server adds to Streamlit (``st.App(routes=...)``).

* ``GET /v/<token>.mp4``: a study video, by its opaque token only (Range requests through
  Starlette's ``FileResponse``, so browsers seek without downloading the whole file). A token
  that is not in the package is a 404; nothing else of the disk is reachable.
* ``GET /dl/<token>/<name>``: the same file as a download with a VR-player file name
  (``<study>-trial03-A_LRF_Full_SBS.mp4``: iw3's full side-by-side suffix, no method).
* ``GET /xr?pid=ID``: the headset page (``assets/xr.html`` + ``assets/xr.js``): WebXR Layers,
  the WebGL two-eye path or the flat fallback with a no-WebXR message; with
  ``&emulate=quest3`` it first loads the vendored ``iwer`` emulator, but only when the server
  was started with the emulator allowed (tests).
* ``GET /xr/api/state?pid=ID`` and ``POST /xr/api/answer?pid=ID``: the headset page's current
  pairwise trial and its answer, through the same store as the Streamlit pages (state from the
  database, duplicates harmless, tampered values rejected with a 400).

No response names a method, a source video or a path: trials are served as
:class:`study_app.package.TrialView` (tokens and counts).
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from benchmark.errors import StereobenchError
from benchmark.layouts import output_name
from study_app.web.context import ASSETS, IWER_JS, WebConfig, open_study

_TOKEN = re.compile(r"^[0-9a-f]{8,64}$")
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# stereoEnabled: iwer renders one mono view unless told otherwise. forceInstall: Chromium exposes a
# native navigator.xr in secure contexts even without a headset.
# emulate=quest3-layers also installs iwer's WebXR Layers polyfill (XRMediaBinding), so the
# Layers path runs too.
EMULATOR_SNIPPET = (
    '<script src="/xr/vendor/iwer.js"></script>\n'
    "<script>window.stereobenchEmulator = new IWER.XRDevice(IWER.metaQuest3);"
    " window.stereobenchEmulator.stereoEnabled = true;"
    " window.stereobenchEmulator.installRuntime({forceInstall: true, polyfillLayers: {layers}});</script>")


def vr_file_name(study_id: str, number: int, label: str) -> str:
    """The download name of a pairwise stimulus: full side-by-side in iw3's naming, no method."""
    return output_name(f"{study_id}-trial{int(number):02d}-{label}", "full-sbs")


def _media_file(cfg: WebConfig, token: str):
    package, _ = open_study(cfg)
    if not _TOKEN.match(token):
        return None
    try:
        path = package.media_path(token)
    except StereobenchError:
        return None
    return path if path.is_file() else None


def _parse_time(value) -> datetime:
    if not value:
        return datetime.now(timezone.utc)
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(timezone.utc)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def make_routes(cfg: WebConfig) -> list[Route]:
    """The extra routes of one study server (see the module docstring)."""

    async def video(request: Request) -> Response:
        path = _media_file(cfg, request.path_params["token"])
        if path is None:
            return Response("not found", status_code=404)
        return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=3600",
                                                                  "X-Content-Type-Options": "nosniff"})

    async def download(request: Request) -> Response:
        path = _media_file(cfg, request.path_params["token"])
        name = request.path_params["name"]
        if path is None or not re.match(r"^[A-Za-z0-9._-]{1,120}$", name):
            return Response("not found", status_code=404)
        return FileResponse(path, media_type="video/mp4", filename=name)

    async def xr_page(request: Request) -> Response:
        emulate = request.query_params.get("emulate", "")
        snippet = ""
        if emulate:
            if not cfg.xr_emulator:
                return HTMLResponse("<p>The WebXR emulator is only served by a test server.</p>", status_code=403)
            if not IWER_JS.is_file():
                return HTMLResponse("<p>The WebXR emulator is not installed: run <code>make install</code>.</p>",
                                    status_code=503)
            snippet = EMULATOR_SNIPPET.replace("{layers}", "true" if emulate == "quest3-layers" else "false")
        page = (ASSETS / "xr.html").read_text(encoding="utf-8").replace("{emulator}", snippet)
        return HTMLResponse(page, headers=_NO_STORE)

    async def xr_js(request: Request) -> Response:
        return FileResponse(ASSETS / "xr.js", media_type="text/javascript", headers=_NO_STORE)

    async def iwer_js(request: Request) -> Response:
        if not cfg.xr_emulator or not IWER_JS.is_file():
            return Response("not found", status_code=404)
        return FileResponse(IWER_JS, media_type="text/javascript")

    async def xr_state(request: Request) -> Response:
        pid = request.query_params.get("pid", "")
        return JSONResponse(headset_state(cfg, pid), headers=_NO_STORE)

    async def xr_answer(request: Request) -> Response:
        pid = request.query_params.get("pid", "")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"error": "the answer must be a JSON object"}, status_code=400)
        status, payload = headset_answer(cfg, pid, body)
        return JSONResponse(payload, status_code=status, headers=_NO_STORE)

    return [
        Route("/v/{token}.mp4", video, methods=["GET", "HEAD"]),
        Route("/dl/{token}/{name}", download, methods=["GET", "HEAD"]),
        Route("/xr", xr_page, methods=["GET"]),
        Route("/xr/assets/xr.js", xr_js, methods=["GET"]),
        Route("/xr/vendor/iwer.js", iwer_js, methods=["GET"]),
        Route("/xr/api/state", xr_state, methods=["GET"]),
        Route("/xr/api/answer", xr_answer, methods=["POST"]),
    ]


def video_url(token: str) -> str:
    return f"/v/{token}.mp4"


def headset_state(cfg: WebConfig, pid: str) -> dict:
    """What the headset page shows for participant ``pid`` (JSON-ready; tokens only)."""
    package, store = open_study(cfg)
    if store.is_closed:
        return {"status": "closed", "message": "This study is closed. Thank you!"}
    participant = store.join(pid) if pid else None
    if participant is None:
        return {"status": "unknown", "message": "This participant link is not part of the study. "
                                                "Please check the link you were given."}
    if package.kind != "pairwise":
        return {"status": "wrong-kind", "message": "This study is a desktop study: open the participant link on a "
                                                   "computer."}
    done, total = store.progress(pid)
    view = store.next_trial(pid)
    if view is None:
        return {"status": "done", "progress": [done, total], "message": "All trials are done. Thank you!"}
    videos = [{"key": label.lower(), "label": label, "src": video_url(tok),
               "filename": vr_file_name(package.study_id, view.number, label),
               "download": f"/dl/{tok}/{vr_file_name(package.study_id, view.number, label)}"}
              for label, tok in zip(view.labels, view.media)]
    return {"status": "trial", "progress": [done, total],
            "trial": {"trial_id": view.trial_id, "kind": view.kind, "number": view.number, "total": view.total,
                      "videos": videos}}


def headset_answer(cfg: WebConfig, pid: str, body: dict) -> tuple[int, dict]:
    """Store one answer from the headset page: (HTTP status, JSON payload)."""
    from study_app.store import InvalidResponse, StudyClosed

    _, store = open_study(cfg)
    if not pid or store.join(pid) is None:
        return 404, {"error": "unknown participant"}
    try:
        result = store.submit(
            pid, str(body.get("trial_id", "")), str(body.get("answer", "")),
            shown_at=_parse_time(body.get("shown_at")), submitted_at=_parse_time(body.get("submitted_at")),
            plays=_count(body.get("plays")), replays=_count(body.get("replays")),
            viewport=html.escape(str(body.get("viewport", ""))[:40]),
            user_agent=str(body.get("user_agent", ""))[:400], device="headset")
    except StudyClosed as exc:
        return 409, {"error": str(exc)}
    except InvalidResponse as exc:
        return 400, {"error": str(exc)}
    return 200, {"stored": bool(result.stored), "duplicate": bool(result.duplicate)}


def _count(value) -> int:
    try:
        return max(0, min(10_000, int(value)))
    except (TypeError, ValueError):
        return 0
