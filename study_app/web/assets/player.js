// Synchronised player of one ranking trial (a Streamlit Components v2 module).
//
// Every <video> of the trial (references and the anonymised slots) follows ONE master clock, the
// first video: play / pause / replay / frame step act on the master and every follower is put on
// the master's time. A requestAnimationFrame loop corrects drift while playing: a follower more
// than half a frame away is seeked to the master's time, a smaller drift is absorbed by nudging
// its playbackRate (a seek on every frame would stall the decoders). Playback starts only when
// every video can play through, so a slow decoder cannot leave the others alone.
// All videos were encoded with the same fps, frame count and GOP (study package), so a seek to
// (n + 0.5) / fps lands on frame n in every one of them.
//
// data = {trial, fps, frames, videos: [{id, label, src, role}]}; role is "reference" or "slot".
// State reported to Python (setStateValue("stats", ...)): plays, replays, viewport, user_agent.
// Tests read the clock through window.stereobenchPlayer (times(), frame(), ready()).

const SEEK_DRIFT_FRAMES = 0.5; // seek a follower further than this many frames away
const NUDGE_DRIFT_FRAMES = 0.1; // below this the follower runs at rate 1
const MAX_NUDGE = 0.1; // playbackRate stays within 1 +- 10%

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  if (!data || !data.videos || !data.videos.length) return;
  // Streamlit calls this function again on every rerun; keep the player of the same trial.
  const existing = parentElement.__stereobenchPlayer;
  // Only the latest returned cleanup is kept, so hand back the running player's every time.
  if (existing && existing.trial === data.trial) return () => existing.destroy();
  if (existing) existing.destroy();

  const fps = data.fps || 25;
  const frames = data.frames || 1;
  const root = document.createElement("div");
  root.className = "sb-player";
  root.innerHTML = `
    <div class="sb-grid sb-refs"></div>
    <div class="sb-grid sb-slots"></div>
    <div class="sb-controls">
      <button type="button" data-act="play">&#9654; Play</button>
      <button type="button" data-act="pause">&#10074;&#10074; Pause</button>
      <button type="button" data-act="replay">&#8635; Replay</button>
      <button type="button" data-act="back" title="one frame back">&#9664;| Frame</button>
      <button type="button" data-act="fwd" title="one frame forward">Frame |&#9654;</button>
      <span class="sb-status" aria-live="polite">loading videos...</span>
    </div>`;
  parentElement.appendChild(root);

  const videos = [];
  for (const v of data.videos) {
    const cell = document.createElement("figure");
    cell.className = "sb-cell sb-" + v.role;
    const el = document.createElement("video");
    el.muted = true;
    el.playsInline = true;
    el.setAttribute("playsinline", "");
    el.setAttribute("muted", "");
    el.preload = "auto";
    el.src = v.src;
    el.dataset.id = v.id;
    el.disablePictureInPicture = true;
    const cap = document.createElement("figcaption");
    cap.textContent = v.label;
    cell.appendChild(el);
    cell.appendChild(cap);
    root.querySelector(v.role === "reference" ? ".sb-refs" : ".sb-slots").appendChild(cell);
    videos.push(el);
  }
  const master = videos[0];
  const followers = videos.slice(1);
  const status = root.querySelector(".sb-status");
  let plays = 0;
  let replays = 0;
  let playing = false;
  let raf = 0;
  let destroyed = false;

  const ready = () => videos.every((v) => v.readyState >= 4 || (v.readyState >= 3 && v.buffered.length &&
    v.buffered.end(v.buffered.length - 1) >= v.duration - 1e-3));
  const frameOf = (t) => Math.min(frames - 1, Math.max(0, Math.floor(t * fps + 1e-3)));
  const showStatus = () => {
    status.textContent = ready()
      ? `frame ${frameOf(master.currentTime) + 1} / ${frames}${playing ? " (playing)" : ""}`
      : "loading videos...";
  };

  function report() {
    setStateValue("stats", {
      plays, replays,
      viewport: `${window.innerWidth}x${window.innerHeight}`,
      user_agent: navigator.userAgent,
    });
  }

  function whenReady() {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (destroyed) return;
        if (ready()) { videos.forEach((v) => v.removeEventListener("canplaythrough", check)); resolve(); }
      };
      videos.forEach((v) => { v.addEventListener("canplaythrough", check); v.load && v.readyState === 0 && v.load(); });
      check();
    });
  }

  function alignFollowers() {
    for (const f of followers) {
      f.playbackRate = 1;
      if (Math.abs(f.currentTime - master.currentTime) > 1e-3) f.currentTime = master.currentTime;
    }
  }

  function loop() {
    if (destroyed) return;
    if (playing) {
      const t = master.currentTime;
      for (const f of followers) {
        const drift = (f.currentTime - t) * fps; // in frames; > 0: follower ahead
        if (Math.abs(drift) > SEEK_DRIFT_FRAMES) {
          f.currentTime = t;
          f.playbackRate = 1;
        } else if (Math.abs(drift) > NUDGE_DRIFT_FRAMES) {
          f.playbackRate = 1 - Math.max(-MAX_NUDGE, Math.min(MAX_NUDGE, drift * 0.2));
        } else {
          f.playbackRate = 1;
        }
        if (f.paused && !master.paused) f.play().catch(() => {});
      }
      if (master.ended) pause();
    }
    showStatus();
    raf = requestAnimationFrame(loop);
  }

  async function play() {
    await whenReady();
    if (destroyed) return;
    if (master.ended || master.currentTime >= master.duration - 1e-3) master.currentTime = 0;
    alignFollowers();
    playing = true;
    await Promise.all(videos.map((v) => v.play().catch(() => {})));
  }

  function pause() {
    playing = false;
    videos.forEach((v) => v.pause());
    alignFollowers();
  }

  function seekFrame(n) {
    pause();
    const t = (Math.min(frames - 1, Math.max(0, n)) + 0.5) / fps;
    videos.forEach((v) => { v.currentTime = t; });
  }

  const actions = {
    play: () => { plays += 1; report(); return play(); },
    pause: () => pause(),
    replay: () => { replays += 1; report(); pause(); videos.forEach((v) => { v.currentTime = 0; }); return play(); },
    back: () => seekFrame(frameOf(master.currentTime) - 1),
    fwd: () => seekFrame(frameOf(master.currentTime) + 1),
  };
  root.querySelector(".sb-controls").addEventListener("click", (ev) => {
    const act = ev.target.closest("button")?.dataset.act;
    if (act) actions[act]();
  });
  whenReady().then(showStatus);
  raf = requestAnimationFrame(loop);

  const api = {
    trial: data.trial,
    videos,
    times: () => videos.map((v) => v.currentTime),
    frame: () => frameOf(master.currentTime),
    ready,
    playing: () => playing,
    seekFrame,
    play: actions.play,
    pause,
    destroy() {
      destroyed = true;
      cancelAnimationFrame(raf);
      videos.forEach((v) => { v.pause(); v.removeAttribute("src"); v.load(); });
      root.remove();
      if (window.stereobenchPlayer === api) delete window.stereobenchPlayer;
      if (parentElement.__stereobenchPlayer === api) delete parentElement.__stereobenchPlayer;
    },
  };
  parentElement.__stereobenchPlayer = api;
  window.stereobenchPlayer = api;
  report();
  return () => api.destroy();
}
