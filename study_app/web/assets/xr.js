// Headset page of the VR pairwise study: plays a side-by-side (left|right) stereo video
// stereoscopically in WebXR and takes the answer (A / B / equal).
//
// Paths, best first:
//   1. WebXR Layers: XRMediaBinding.createQuadLayer(video, {layout: "stereo-left-right"}) lets
//      the compositor show the video directly (Quest Browser): sharpest and cheapest.
//   2. WebGL two-eye path (Apple Vision Pro Safari, any browser without Layers): one video
//      texture on a world-locked virtual screen; each eye's view samples its half of the frame
//      (u * 0.5 for the left eye, 0.5 + u * 0.5 for the right eye).
//   3. No WebXR (navigator.xr missing or immersive-vr unsupported): a clear message and the flat
//      side-by-side video, plus download links for an offline VR player.
// Query: pid (participant), xrpath=webgl (force path 2), emulate=quest3 (tests: the page was
// served with the iwer emulator, loaded before this script).
// Tests read window.stereobenchXR: {mode, session, probe: {left: [r,g,b,a], right: [...]}, frames}.

const params = new URLSearchParams(location.search);
const pid = params.get("pid") || "";
const forcePath = params.get("xrpath") || "";
const $ = (sel) => document.querySelector(sel);
const state = { mode: "none", session: false, probe: {}, frames: 0, trial: null, shown: null, error: "" };
window.stereobenchXR = state;

let trial = null; // {trial_id, progress, videos: [{key, label, src, download, filename}]}
let current = 0; // index into trial.videos of the one playing
let plays = 0;
let replays = 0;
let shownAt = null;

function setMessage(text, cls = "") {
  const el = $("#message");
  el.textContent = text;
  el.className = cls;
}

async function api(path, body) {
  const url = `${path}?pid=${encodeURIComponent(pid)}`;
  const res = await fetch(url, body ? {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  } : {});
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(json.error || `HTTP ${res.status}`);
  return json;
}

async function loadTrial() {
  const s = await api("/xr/api/state");
  $("#progress").textContent = s.progress ? `Trial ${s.progress[0] + (s.trial ? 1 : 0)} of ${s.progress[1]}` : "";
  if (s.status !== "trial") {
    trial = null;
    $("#trial").hidden = true;
    setMessage(s.message || "Nothing to show.", s.status === "done" ? "ok" : "warn");
    return;
  }
  trial = s.trial;
  state.trial = trial.trial_id;
  if (trial.kind === "training") $("#progress").textContent += " · training trial (not counted)";
  shownAt = new Date().toISOString();
  plays = 0;
  replays = 0;
  $("#trial").hidden = false;
  const list = $("#downloads");
  list.innerHTML = "";
  const pick = $("#pick");
  pick.innerHTML = "";
  trial.videos.forEach((v, i) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = v.download;
    a.textContent = v.filename;
    a.setAttribute("download", v.filename);
    li.appendChild(a);
    list.appendChild(li);
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `Show ${v.label}`;
    b.addEventListener("click", () => select(i));
    pick.appendChild(b);
  });
  select(0);
}

function select(i) {
  current = i;
  const v = trial.videos[i];
  const video = $("#video");
  if (video.dataset.src !== v.src) {
    video.dataset.src = v.src;
    video.src = v.src;
  }
  $("#now").textContent = `Now showing: ${v.label}`;
  state.shown = v.label;
  video.play().then(() => { plays += 1; }).catch(() => {});
}

async function answer(value) {
  if (!trial) return;
  const video = $("#video");
  try {
    const res = await api("/xr/api/answer", {
      trial_id: trial.trial_id, answer: value, shown_at: shownAt, submitted_at: new Date().toISOString(),
      plays, replays, viewport: `${innerWidth}x${innerHeight}`, user_agent: navigator.userAgent,
    });
    setMessage(res.duplicate ? "Answer was already stored." : "Answer stored.", "ok");
  } catch (e) {
    setMessage(`Answer not stored: ${e.message}`, "warn");
    return;
  }
  video.pause();
  await loadTrial();
}

// ------------------------------------------------------------------ WebGL two-eye path
const VS = `#version 300 es
in vec2 pos; uniform mat4 proj, view, model; out vec2 uv;
void main() { uv = vec2(pos.x * 0.5 + 0.5, 0.5 - pos.y * 0.5); gl_Position = proj * view * model * vec4(pos, 0.0, 1.0); }`;
const FS = `#version 300 es
precision mediump float; in vec2 uv; uniform sampler2D tex; uniform float eyeOffset; out vec4 color;
void main() {
  // Stay half a texel inside this eye's half: linear filtering must not blend in the other eye.
  float h = 0.5 / float(textureSize(tex, 0).x);
  color = texture(tex, vec2(eyeOffset + clamp(uv.x * 0.5, h, 0.5 - h), uv.y));
}`;

function compile(gl, type, src) {
  const s = gl.createShader(type);
  gl.shaderSource(s, src);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
  return s;
}

function makeRenderer(gl, video) {
  const prog = gl.createProgram();
  gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, VS));
  gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, FS));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  const buf = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, buf);
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
  const vao = gl.createVertexArray();
  gl.bindVertexArray(vao);
  const loc = gl.getAttribLocation(prog, "pos");
  gl.enableVertexAttribArray(loc);
  gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
  const tex = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, tex);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, 1, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array([40, 40, 40, 255]));
  const u = (n) => gl.getUniformLocation(prog, n);
  const uni = { proj: u("proj"), view: u("view"), model: u("model"), eyeOffset: u("eyeOffset"), tex: u("tex") };
  return {
    upload() {
      if (video.readyState >= 2 && video.videoWidth) {
        gl.bindTexture(gl.TEXTURE_2D, tex);
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, video);
      }
    },
    draw(proj, view, model, eye) {
      gl.useProgram(prog);
      gl.bindVertexArray(vao);
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_2D, tex);
      gl.uniform1i(uni.tex, 0);
      gl.uniformMatrix4fv(uni.proj, false, proj);
      gl.uniformMatrix4fv(uni.view, false, view);
      gl.uniformMatrix4fv(uni.model, false, model);
      gl.uniform1f(uni.eyeOffset, eye === "right" ? 0.5 : 0.0);
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    },
  };
}

// A virtual screen SCREEN_DISTANCE metres in front of where the head was when the session began,
// SCREEN_WIDTH wide, with the aspect of ONE eye's half of the side-by-side frame.
const SCREEN_DISTANCE = 2.5;
const SCREEN_WIDTH = 3.2;

function screenModel(video, origin) {
  const aspect = video.videoWidth && video.videoHeight ? (video.videoWidth / 2) / video.videoHeight : 16 / 9;
  const hw = SCREEN_WIDTH / 2;
  const hh = hw / aspect;
  return new Float32Array([hw, 0, 0, 0, 0, hh, 0, 0, 0, 0, 1, 0,
    origin.x, origin.y, origin.z - SCREEN_DISTANCE, 1]);
}

async function startWebGL(session, refSpace, video) {
  const canvas = document.createElement("canvas");
  const gl = canvas.getContext("webgl2", { xrCompatible: true, preserveDrawingBuffer: true });
  if (!gl) throw new Error("no WebGL2");
  if (gl.makeXRCompatible) await gl.makeXRCompatible();
  session.updateRenderState({ baseLayer: new XRWebGLLayer(session, gl) });
  const renderer = makeRenderer(gl, video);
  let model = null;
  const probe = new Uint8Array(4);
  session.requestAnimationFrame(function onFrame(t, frame) {
    session.requestAnimationFrame(onFrame);
    const pose = frame.getViewerPose(refSpace);
    if (!pose) return;
    const layer = session.renderState.baseLayer;
    if (!model || state.frames < 2) model = screenModel(video, pose.transform.position);
    gl.bindFramebuffer(gl.FRAMEBUFFER, layer.framebuffer);
    gl.clearColor(0.1, 0.1, 0.1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    renderer.upload();
    for (const view of pose.views) {
      const vp = layer.getViewport(view);
      gl.viewport(vp.x, vp.y, vp.width, vp.height);
      renderer.draw(view.projectionMatrix, view.transform.inverse.matrix, model, view.eye);
      // The colour at the centre of each eye's image: what the tests compare.
      gl.readPixels(vp.x + (vp.width >> 1), vp.y + (vp.height >> 1), 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, probe);
      state.probe[view.eye === "none" ? "left" : view.eye] = Array.from(probe);
    }
    state.frames += 1;
  });
  return "webgl";
}

function startLayers(session, refSpace, video) {
  const binding = new XRMediaBinding(session);
  const aspect = video.videoWidth && video.videoHeight ? (video.videoWidth / 2) / video.videoHeight : 16 / 9;
  const layer = binding.createQuadLayer(video, {
    space: refSpace, layout: "stereo-left-right",
    width: SCREEN_WIDTH / 2, height: SCREEN_WIDTH / 2 / aspect,
    transform: new XRRigidTransform({ x: 0, y: 0, z: -SCREEN_DISTANCE }),
  });
  session.updateRenderState({ layers: [layer] });
  session.requestAnimationFrame(function onFrame() {
    state.frames += 1;
    session.requestAnimationFrame(onFrame);
  });
  return "layers";
}

async function enterVR() {
  const video = $("#video");
  try {
    const session = await navigator.xr.requestSession("immersive-vr", { optionalFeatures: ["layers"] });
    state.session = true;
    session.addEventListener("end", () => {
      state.session = false;
      state.mode = "flat";
      $("#enter").textContent = "Enter VR";
    });
    // The page is hidden while immersive: the controller trigger (or a pinch, the transient
    // pointer of Vision Pro) switches between A and B, starting with the one shown on the page.
    session.addEventListener("select", () => {
      if (trial) select((current + 1) % trial.videos.length);
    });
    const refSpace = await session.requestReferenceSpace("local");
    video.play().catch(() => {});
    // Layers where the browser has them (a polyfill may not list "layers" in enabledFeatures, so
    // try it and fall back to WebGL when the layer cannot be made).
    state.mode = "";
    if (forcePath !== "webgl" && typeof XRMediaBinding !== "undefined") {
      try {
        state.mode = startLayers(session, refSpace, video);
      } catch (e) {
        state.layersError = String(e && e.message || e);
      }
    }
    if (!state.mode) state.mode = await startWebGL(session, refSpace, video);
    $("#enter").textContent = "Exit VR";
    $("#enter").onclick = () => session.end();
    $("#mode").textContent = state.mode === "layers" ? "WebXR Layers" : "WebGL two-eye rendering";
  } catch (e) {
    state.error = String(e && e.message || e);
    setMessage(`Could not enter VR: ${state.error}`, "warn");
  }
}

async function main() {
  if (!pid) {
    setMessage("This page needs your participant link (…/xr?pid=YOUR-ID).", "warn");
    return;
  }
  ["a", "b", "equal"].forEach((v) => $(`#answer-${v}`).addEventListener("click", () => answer(v)));
  $("#replay").addEventListener("click", () => {
    const video = $("#video");
    replays += 1;
    video.currentTime = 0;
    video.play().catch(() => {});
  });
  try {
    await loadTrial();
  } catch (e) {
    setMessage(`Could not load the study: ${e.message}`, "warn");
    return;
  }
  const xr = navigator.xr;
  const supported = xr && await xr.isSessionSupported("immersive-vr").catch(() => false);
  if (!supported) {
    state.mode = "flat";
    $("#noxr").hidden = false;
    return;
  }
  state.mode = "ready";
  const enter = $("#enter");
  enter.hidden = false;
  enter.onclick = enterVR; // a user gesture: required to start an immersive session
}

main();
