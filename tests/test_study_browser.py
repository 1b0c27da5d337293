"""End-to-end: the study server in Debian's Chromium through Python Playwright (no browser download).

A real server (``study_app.web.serve.serve`` in a subprocess, on a free loopback port, a fresh
SQLite database) serves a tiny study package; Chromium is launched with
``executable_path=/usr/bin/chromium``. Checks: a participant ranks trials by real clicks,
refreshes, resumes and finishes; the synchronised videos stay within one frame of each other
after play, pause and frame steps (``currentTime`` read from the page); the headset page enters
an immersive session under the vendored WebXR emulator (iwer) and draws different images for the
two eyes (pixels read back), and without WebXR shows the no-WebXR message; nothing served names a
method or a path. Screenshots go to ``results/test-artifacts/study-browser/`` (git-ignored).

Skipped, with the reason, when Chromium or Playwright is missing (``make install`` installs
both); the emulator test also needs ``make install``'s vendored iwer.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.study_web_helpers import METHODS, build

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "results" / "test-artifacts" / "study-browser"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required"]

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (make install installs it with apt-get)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed (make install)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, package_dir: Path, db: Path, tls: tuple[Path, Path] | None = None):
        self.port = _free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        tls_args = f", certfile={str(tls[0])!r}, keyfile={str(tls[1])!r}" if tls else ""
        code = ("import sys; from study_app.web.serve import serve; "
                "serve(sys.argv[1], db_url=sys.argv[2], port=int(sys.argv[3]), host='127.0.0.1', "
                f"xr_emulator=True, print_links=False{tls_args})")
        self.context = None
        if tls:
            import ssl

            self.context = ssl.create_default_context(cafile=str(tls[0]))
        self.log = open(db.with_suffix(".log"), "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(package_dir), str(db), str(self.port)],
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"study server exited: {db.with_suffix('.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2, context=self.context) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("study server did not become healthy in 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study-browser")
    # One main video per participant: training, main, attention and repeat trials (4 in all).
    return tmp, {kind: build(tmp, kind, videos_per_participant=1) for kind in ("ranking", "pairwise")}


@pytest.fixture(scope="module")
def servers(packages):
    tmp, pkgs = packages
    started = {kind: Server(p.dir, tmp / f"{kind}.sqlite") for kind, p in pkgs.items()}
    yield started
    for s in started.values():
        s.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    yield pg
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _store(packages, kind):
    from study_app.store import StudyStore

    tmp, pkgs = packages
    return StudyStore.open(str(tmp / f"{kind}.sqlite"), pkgs[kind])


def _wait_trial(page, store, pid) -> None:
    """Wait until the page shows the store's current trial with fresh (unchecked) rank widgets:
    right after a submit the previous trial's widgets are still on the page until the rerun
    replaces them, and a click on those would be lost."""
    tid = store.next_trial(pid).trial_id
    page.wait_for_function(f"window.stereobenchPlayer && window.stereobenchPlayer.trial === {tid!r}",
                           timeout=30000)
    sync_api.expect(page.locator(f".st-key-rank-{tid}-3")).to_be_visible(timeout=20000)


def _rank_visible_trial(page, store, pid, ranks) -> None:
    tid = page.evaluate("window.stereobenchPlayer.trial")
    for i, r in enumerate(ranks):
        # Streamlit tags a keyed widget's container with st-key-<key>: this trial's widget only.
        widget = page.locator(f".st-key-rank-{tid}-{i}")
        for _ in range(3):  # a click that lands while the previous click's rerun redraws is lost
            widget.get_by_text(str(r), exact=True).click()
            try:
                sync_api.expect(widget.get_by_role("radio", name=str(r))).to_be_checked(timeout=5000)
                break
            except AssertionError:
                continue
    button = page.locator(f".st-key-submit-{tid} button")
    for _ in range(3):  # like the radios: a click during a rerun's redraw can be lost; wait for the row
        sync_api.expect(button).to_be_enabled(timeout=15000)
        button.click()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and store.next_trial(pid) is not None \
                and store.next_trial(pid).trial_id == tid:
            time.sleep(0.2)
        if store.next_trial(pid) is None or store.next_trial(pid).trial_id != tid:
            return
    pytest.fail(f"the submit of trial {tid} never reached the database")


def _expect_trial_header(page, n: int, total: int) -> None:
    """Trial n's header is on the page. While Streamlit replaces one run's elements with the
    next's, the previous render of the same header can still be in the DOM (seen once under a
    fully loaded box: two identical "Trial 5 of 5" paragraphs), so the check takes the first."""
    sync_api.expect(page.get_by_text(f"Trial {n} of {total}").first).to_be_visible(timeout=20000)


def _trial_number(page) -> int:
    text = page.get_by_text("Trial ", exact=False).first.inner_text(timeout=20000)
    return int(text.split("Trial ")[1].split(" ")[0])


# ----------------------------------------------------------------------------- ranking, by clicks

def test_participant_ranks_refreshes_resumes_and_finishes(servers, packages, page):
    _, pkgs = packages
    package = pkgs["ranking"]
    pid = package.participant_ids[0]
    store = _store(packages, "ranking")
    total = store.progress(pid)[1]
    page.goto(f"{servers['ranking'].url}/?pid={pid}")
    page.get_by_role("button", name="Start").click()
    for n in (1, 2):
        _wait_trial(page, store, pid)
        _expect_trial_header(page, n, total)
        tid = page.evaluate("window.stereobenchPlayer.trial")
        shot(page, f"ranking-trial-{n}")
        sync_api.expect(page.locator(f".st-key-submit-{tid} button")).to_be_disabled()
        _rank_visible_trial(page, store, pid, [1, 1, 3, 4] if n == 1 else [2, 1, 4, 3])
    _expect_trial_header(page, 3, total)
    assert store.progress(pid) == (2, total)
    shot(page, "ranking-before-refresh")

    page.reload()  # resume from the database, not the browser session
    _expect_trial_header(page, 3, total)
    assert page.get_by_role("button", name="Start").count() == 0
    for n in range(3, total + 1):
        _wait_trial(page, store, pid)
        _expect_trial_header(page, n, total)
        _rank_visible_trial(page, store, pid, [1, 2, 3, 4])
    sync_api.expect(page.get_by_text("All trials are done")).to_be_visible(timeout=20000)
    shot(page, "ranking-finished")
    assert store.progress(pid) == (total, total)
    frame = store.responses_frame()
    first = frame[frame["trial"] == 1]
    trial = package.trial(first["trial_id"].iloc[0])
    assert dict(zip(first["method"], first["rank"])) == dict(zip(trial.methods, [1, 1, 3, 4]))
    assert (frame["user_agent"].str.len() > 0).all() and (frame["viewport"].str.contains("x")).all()
    store.dispose()


# ----------------------------------------------------------------------------- synchronised player

def _spread_frames(page, fps: float) -> float:
    times = page.evaluate("window.stereobenchPlayer.times()")
    return (max(times) - min(times)) * fps


def test_videos_stay_within_one_frame_after_play_pause_and_seek(servers, packages, page):
    _, pkgs = packages
    package = pkgs["ranking"]
    pid = package.participant_ids[1]
    fps = float(package.manifest["fps"] if package.manifest.get("fps") else 8.0)
    page.goto(f"{servers['ranking'].url}/?pid={pid}")
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("window.stereobenchPlayer && window.stereobenchPlayer.ready()", timeout=30000)
    assert page.evaluate("window.stereobenchPlayer.videos.length") == 6  # left, mask, four slots
    page.locator("button[data-act=play]").click()
    page.wait_for_function("window.stereobenchPlayer.times()[0] > 0.6", timeout=15000)
    playing = _spread_frames(page, fps)
    page.locator("button[data-act=pause]").click()
    page.wait_for_timeout(300)
    paused = _spread_frames(page, fps)
    assert playing <= 1.0, f"videos {playing:.2f} frames apart while playing"
    assert paused <= 1.0, f"videos {paused:.2f} frames apart after pause"
    # Drift correction: knock one follower 0.4 s (3 frames) ahead while playing; the master
    # clock's loop must pull it back within a few animation frames.
    page.locator("button[data-act=replay]").click()
    page.wait_for_function("window.stereobenchPlayer.playing() && window.stereobenchPlayer.times()[0] > 0.2",
                           timeout=15000)
    page.evaluate("window.stereobenchPlayer.videos[4].currentTime += 0.4")
    page.wait_for_timeout(400)
    assert page.evaluate("window.stereobenchPlayer.playing()"), "the clip ended before the check"
    corrected = _spread_frames(page, fps)
    assert corrected <= 1.0, f"a drifting follower was still {corrected:.2f} frames off after 400 ms"
    page.locator("button[data-act=pause]").click()
    before = page.evaluate("window.stereobenchPlayer.frame()")
    page.locator("button[data-act=fwd]").click()
    page.wait_for_function("window.stereobenchPlayer.videos.every(v => !v.seeking)", timeout=10000)
    after = page.evaluate("window.stereobenchPlayer.frame()")
    assert after == min(before + 1, page.evaluate("window.stereobenchPlayer.videos[0].duration") * fps - 1) or \
        after == before + 1
    assert _spread_frames(page, fps) <= 1.0
    page.locator("button[data-act=back]").click()
    page.locator("button[data-act=back]").click()
    page.wait_for_function("window.stereobenchPlayer.videos.every(v => !v.seeking)", timeout=10000)
    assert page.evaluate("window.stereobenchPlayer.frame()") == after - 2
    # After a seek every video sits mid-frame on the same frame, exactly.
    times = page.evaluate("window.stereobenchPlayer.times()")
    assert max(times) - min(times) < 1e-3
    shot(page, "player-after-seek")


# ----------------------------------------------------------------------------- anonymity

def test_served_html_and_urls_name_no_method_or_path(servers, packages, page):
    tmp, pkgs = packages
    package = pkgs["ranking"]
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(f"{servers['ranking'].url}/?pid={package.participant_ids[1]}")
    page.get_by_role("button", name="Start").click()  # nothing answered yet: instructions first
    page.wait_for_function("window.stereobenchPlayer && window.stereobenchPlayer.ready()", timeout=30000)
    html = page.content() + page.evaluate(
        "Array.from(document.querySelectorAll('*')).filter(e => e.shadowRoot).map(e => e.shadowRoot.innerHTML).join('')")
    media = [u for u in urls if "/v/" in u]
    assert len(media) >= 6
    forbidden = [*METHODS, str(tmp), "clip0", "clip1", "clip2", "warped", "ground-truth", package.dir.name]
    for needle in forbidden:
        assert needle not in html, f"{needle!r} in the served page"
        assert not any(needle in u for u in urls), f"{needle!r} in a requested URL"
    for u in media[:6]:  # the media bytes themselves (container metadata included)
        with urllib.request.urlopen(u) as r:
            data = r.read()
        assert not any(m.encode() in data for m in METHODS) and str(tmp).encode() not in data
    with pytest.raises(urllib.error.HTTPError) as err:  # a token that is not in the study
        urllib.request.urlopen(f"{servers['ranking'].url}/v/{'0' * 32}.mp4")
    assert err.value.code == 404


# ----------------------------------------------------------------------------- headset page

def test_headset_page_enters_immersive_session_and_draws_two_eyes(servers, packages, page):
    from study_app.web.context import IWER_JS

    if not IWER_JS.is_file():
        pytest.skip(f"the WebXR emulator is not vendored ({IWER_JS.name}); run make install")
    _, pkgs = packages
    pid = pkgs["pairwise"].participant_ids[0]
    page.goto(f"{servers['pairwise'].url}/xr?pid={pid}&emulate=quest3&xrpath=webgl")
    enter = page.locator("#enter")
    sync_api.expect(enter).to_be_visible(timeout=20000)
    page.wait_for_function("document.querySelector('#video').readyState >= 2", timeout=20000)
    enter.click()
    page.wait_for_function("window.stereobenchXR.session && window.stereobenchXR.frames > 5 && "
                           "window.stereobenchXR.probe.left && window.stereobenchXR.probe.right", timeout=30000)
    page.wait_for_timeout(500)
    state = page.evaluate("window.stereobenchXR")
    shot(page, "headset-immersive-emulated")
    assert state["mode"] == "webgl" and not state["error"]
    left, right = state["probe"]["left"], state["probe"]["right"]
    # The side-by-side stimulus is red | blue: each eye must see its own half.
    assert left[0] > 150 and left[2] < 100, f"left eye saw {left}"
    assert right[2] > 150 and right[0] < 100, f"right eye saw {right}"
    # The page is hidden in VR: the controller trigger switches between A and B.
    assert state["shown"] == "A"
    page.evaluate("window.stereobenchEmulator.controllers.right.updateButtonValue('trigger', 1)")
    page.wait_for_timeout(300)
    page.evaluate("window.stereobenchEmulator.controllers.right.updateButtonValue('trigger', 0)")
    page.wait_for_function("window.stereobenchXR.shown === 'B'", timeout=10000)


def test_headset_page_uses_webxr_layers_where_available(servers, packages, page):
    """With XRMediaBinding (here iwer's Layers polyfill) the page composites the video as a
    stereo-left-right quad layer; the emulator's two eye images (left and right half of its canvas)
    show the red and the blue half of the side-by-side stimulus."""
    import io

    from PIL import Image

    from study_app.web.context import IWER_JS

    if not IWER_JS.is_file():
        pytest.skip(f"the WebXR emulator is not vendored ({IWER_JS.name}); run make install")
    _, pkgs = packages
    pid = pkgs["pairwise"].participant_ids[1]
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{servers['pairwise'].url}/xr?pid={pid}&emulate=quest3-layers")
    sync_api.expect(page.locator("#enter")).to_be_visible(timeout=20000)
    page.wait_for_function("document.querySelector('#video').readyState >= 2", timeout=20000)
    page.locator("#enter").click()
    page.wait_for_function("window.stereobenchXR.session && window.stereobenchXR.frames > 5", timeout=30000)
    page.wait_for_timeout(500)
    assert page.evaluate("window.stereobenchXR.mode") == "layers"
    image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image.save(ARTIFACTS / "headset-immersive-layers.png")
    w, h = image.size
    # The stimulus carries a moving white bar near the top of each half: take the median colour of
    # a box in each eye's lower part instead of one pixel, which the bar sometimes crossed.
    pixels = np.asarray(image)
    left = tuple(int(v) for v in np.median(pixels[int(h * 0.4):int(h * 0.75), int(w * 0.1):int(w * 0.4)], axis=(0, 1)))
    right = tuple(int(v) for v in np.median(pixels[int(h * 0.4):int(h * 0.75), int(w * 0.6):int(w * 0.9)], axis=(0, 1)))
    assert left[0] > 150 and left[2] < 100, f"left eye saw {left}"
    assert right[2] > 150 and right[0] < 100, f"right eye saw {right}"


def test_headset_page_without_webxr_shows_the_message_and_flat_fallback(servers, packages, page):
    _, pkgs = packages
    pid = pkgs["pairwise"].participant_ids[1]
    page.goto(f"{servers['pairwise'].url}/xr?pid={pid}")
    sync_api.expect(page.locator("#noxr")).to_be_visible(timeout=20000)
    assert "WebXR is not available" in page.locator("#noxr").inner_text()
    assert page.locator("#enter").is_hidden()
    sync_api.expect(page.locator("#video")).to_be_visible()
    links = page.locator("#downloads a")
    assert links.count() == 2 and all(n.endswith("_LRF_Full_SBS.mp4") for n in links.all_inner_texts())
    shot(page, "headset-no-webxr")
    page.locator("#answer-b").click()
    sync_api.expect(page.locator("#message")).to_have_text("Answer stored.", timeout=10000)
    store = _store(packages, "pairwise")
    assert store.progress(pid)[0] == 1
    store.dispose()


def test_https_serving_for_a_headset_on_the_lan(packages, tmp_path):
    """serve(certfile=, keyfile=) speaks HTTPS (a headset on the LAN needs a secure context):
    the health check, the headset page and a video by token over TLS with a self-signed pair."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make the self-signed test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=study", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    _, pkgs = packages
    package = pkgs["pairwise"]
    server = Server(package.dir, tmp_path / "tls.sqlite", tls=(cert, key))
    try:
        assert server.url.startswith("https://")
        pid = package.participant_ids[0]
        with urllib.request.urlopen(f"{server.url}/xr?pid={pid}", context=server.context) as r:
            assert r.status == 200 and b"WebXR" in r.read()
        token = next(iter(package.manifest["media"]))
        request = urllib.request.Request(f"{server.url}/v/{token}.mp4", headers={"Range": "bytes=0-99"})
        with urllib.request.urlopen(request, context=server.context) as r:
            assert r.status == 206 and len(r.read()) == 100
    finally:
        server.stop()
