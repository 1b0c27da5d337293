"""The synchronised multi-video player as a Streamlit Components v2 component.

The component's JavaScript (``assets/player.js``) and CSS (``assets/player.css``) hold every
video of a ranking trial on one master clock (play, pause, replay, frame step; followers seeked
or rate-nudged when they drift; start only when all can play through). It reports the play and
replay counts, the viewport and the user agent back as its ``stats`` state. Media are referenced
by opaque token URLs only (``/v/<token>.mp4``).
"""

from __future__ import annotations

from functools import lru_cache

from study_app.web.context import ASSETS


@lru_cache(maxsize=1)
def _component():
    import streamlit as st

    return st.components.v2.component(
        "stereobench_synced_player",
        js=(ASSETS / "player.js").read_text(encoding="utf-8"),
        css=(ASSETS / "player.css").read_text(encoding="utf-8"),
    )


def player_data(trial_id: str, fps: float, frames: int, videos: list[dict]) -> dict:
    """The component's ``data``: ``videos`` = [{id, label, src, role}] with role ``reference``
    or ``slot``; the first video is the master clock."""
    return {"trial": trial_id, "fps": float(fps), "frames": int(frames), "videos": videos}


def synced_player(data: dict, *, key: str) -> dict:
    """Mount the player; returns its last reported stats (plays, replays, viewport, user_agent)."""
    result = _component()(data=data, key=key, default={"stats": {}}, on_stats_change=lambda: None)
    stats = getattr(result, "stats", None)
    return dict(stats) if isinstance(stats, dict) else {}
