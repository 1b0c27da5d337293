"""Serve a study package: the Streamlit pages plus the media and headset routes, in one process.

``serve(package_dir, db_url=..., port=..., host=...)`` is what ``stereobench study serve DIR`` and
``make study`` call. It runs ``st.App(app.py, routes=make_routes(...))`` (Streamlit's ASGI app
on uvicorn), so the participant pages (``/?pid=ID``), the admin page (``/?page=admin``), the
videos (``/v/<token>.mp4``, Range requests), the downloads and the WebXR headset page
(``/xr?pid=ID``) share one port and one open store.

HTTPS (a headset on the LAN: WebXR needs a secure context, i.e. HTTPS or localhost): pass
``certfile`` / ``keyfile`` (a self-signed pair: ``openssl req -x509 -newkey rsa:2048 -nodes
-keyout key.pem -out cert.pem -days 30 -subj /CN=study.local -addext
subjectAltName=IP:192.168.1.20``) and ``host="0.0.0.0"``; the headset's browser then opens
``https://<this machine's LAN address>:<port>/xr?pid=ID`` and accepts the certificate once. On a
Quest connected by USB, ``adb reverse tcp:8501 tcp:8501`` makes ``http://localhost:8501`` reach
this machine, which is a secure context without any certificate. docs/study.md has the steps.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.errors import StereobenchError
from study_app.web.context import HERE, WebConfig, open_study

APP_SCRIPT = HERE / "app.py"


def participant_links(package, base_url: str) -> list[str]:
    """One join link per pre-generated participant id (desktop page; the VR study's headset page
    is linked from it)."""
    return [f"{base_url}/?pid={pid}" for pid in package.participant_ids]


def _check_port_free(host: str, port: int) -> None:
    import socket

    try:
        socket.create_server((host or "0.0.0.0", port)).close()  # SO_REUSEADDR, as the server binds
    except OSError as exc:
        raise StereobenchError(f"cannot serve on {host}:{port} ({exc.strerror or exc}): another server (a study "
                               f"already running?) holds the port; stop it or choose another with --port") from None


def admin_link_line(base: str) -> str:
    """The admin line of the start-up links; says so when no admin hash is set (the page would
    show a password form that can never succeed)."""
    from study_app.auth import ENV_HASH, admin_hash

    if admin_hash() is None:
        return (f"admin page: {base}/?page=admin is disabled: no {ENV_HASH} is set (export "
                f"{ENV_HASH}=\"$(stereobench study hash-password)\" and restart)")
    return f"admin page: {base}/?page=admin"


def serve(package_dir: str | os.PathLike, *, db_url: str | None = None, port: int = 8501,
          host: str = "localhost", certfile: str | None = None, keyfile: str | None = None,
          xr_emulator: bool = False, print_links: bool = True) -> None:
    """Serve the study in ``package_dir`` until interrupted (blocks).

    ``db_url``: the store's database (a SQLite path or a SQLAlchemy URL such as
    ``postgresql+psycopg://...``; None: the package's default SQLite file). ``xr_emulator``: let
    the headset page load the vendored WebXR emulator (``/xr?pid=ID&emulate=quest3``; tests only).
    The admin password hash comes from ``STEREOBENCH_STUDY_ADMIN_HASH`` (see study_app.auth).
    """
    import streamlit as st

    cfg = WebConfig(Path(package_dir).resolve(), db_url, xr_emulator)
    os.environ.update(cfg.to_env())
    package, _store = open_study(cfg)  # fail here, with a one-line error, rather than in the page
    from study_app.web.routes import make_routes

    config = {
        "server.port": int(port), "server.address": host, "server.headless": True,
        "browser.gatherUsageStats": False, "server.fileWatcherType": "none", "server.runOnSave": False,
        "client.toolbarMode": "minimal", "client.showErrorDetails": "none",
    }
    if certfile or keyfile:
        config.update({"server.sslCertFile": certfile, "server.sslKeyFile": keyfile})
    _check_port_free(host, int(port))  # else Streamlit prints "Port N is not available" after the links, exit 1
    if print_links:
        scheme = "https" if certfile else "http"
        shown_host = "localhost" if host in ("0.0.0.0", "::", "") else host
        base = f"{scheme}://{shown_host}:{port}"
        print(f"study {package.study_id} ({package.kind}, {len(package.participant_ids)} participants) at {base}")
        print(admin_link_line(base))
        for link in participant_links(package, base)[:20]:
            print(f"participant: {link}")
        if package.kind == "pairwise":
            print(f"headset page: {base}/xr?pid=<participant id> (linked from each participant's page)")
    app = st.App(str(APP_SCRIPT), routes=make_routes(cfg))
    app.run(config=config)
