// CapHuman studio: the live head, drawn in the browser with WebGL2.
//
// One head state (CH.state()) is the truth for the preview, the 3D download, the preset, the API
// and Generate: base state (from the server: the fitted reference, a preset, a reset) + the value
// every slider shows. Slider input never calls the server; the head is posed here every animation
// frame (expression blendshapes + linear blend skinning + SH shading, the same conventions as
// caphuman/head/lbs.py and caphuman/render/maps.py). When a control is released (or keys pause for
// KEY_IDLE_MS) the state is committed once: the server renders the authoritative hint, GLB and preset.
//
// Written for this project (no upstream code). CH_CONFIG is prepended by demo/ui.py.
(function () {
  "use strict";
  const CFG = window.CH_CONFIG;
  const CH = (window.CH = window.CH || {});
  // Keys commit after a real pause: KEY_IDLE_MS with no key or slider input since the frame that
  // showed the last change reached the screen (slow software-rendered frames never commit between
  // presses). A pointer release, Enter in a box and every button commit at once.
  const KEY_IDLE_MS = 1000;
  const DIM = 0.45; // caphuman/render/preview_image.py PHOTO_DIM
  const SIZE = 512;

  CH.specs = CFG.sliders;
  CH.base = null; // HeadState dict from the server
  CH.values = {}; // slider key -> number on screen
  CH.nonce = null;
  CH.payloadUrl = null;
  CH.head = null; // decoded payload
  CH.stats = { frames: 0, updateMs: [], commits: 0, lastFrameT: 0 };
  CH.view = { opacity: 1.0, textured: true };
  CH.history = [];
  CH.future = [];
  let dirty = false, lastInput = 0, pointerDown = false, lastCommitted = null, applying = false;
  CH.fit = null; // the fitted state of the photo in use (placement, resets and the sliders' ↺ return to it)
  CH.photo = null; // {name} of the photo in use

  // ------------------------------------------------------------------ state
  function clone(o) { return JSON.parse(JSON.stringify(o)); }

  function neutralState() {
    return { format: "caphuman.head_state/1", shape: [], expression: [], expression_controls: {},
      pose: { yaw: 0, pitch: 0, roll: 0, jaw: 0, eye_yaw: 0, eye_pitch: 0 }, placement: { scale: 1, shift_x: 0, shift_y: 0 },
      lighting: { azimuth: 0, elevation: 20, intensity: 0.8, ambient: 0.45, color: [1, 1, 1], sh: null }, albedo: [] };
  }

  // Mirror of caphuman/studio/controls.py state_from_values.
  CH.state = function (values) {
    values = values || CH.values;
    const s = clone(CH.base || neutralState());
    s.expression_controls = s.expression_controls || {};
    const expr = (s.expression || []).slice();
    let lightChanged = false;
    for (const spec of CH.specs) {
      // the slider shows the base value rounded to its step; while it does, the state keeps the
      // base's exact value (a preset's roll 4.4 stays 4.4); a moved slider gives its own value
      const exact = valueOf(s, spec), shown = values[spec.key];
      const v = shown === undefined || shown === snap(spec, exact) ? exact : shown;
      const [group, name] = spec.key.split(".");
      if (group === "pose") s.pose[name] = v;
      else if (group === "expr") s.expression_controls[name] = v;
      else if (group === "light") { if (s.lighting[name] !== v) lightChanged = true; s.lighting[name] = v; }
      else if (group === "place") s.placement[name] = v;
      else { const i = +name; while (expr.length <= i) expr.push(0); expr[i] = v; }
    }
    while (expr.length && expr[expr.length - 1] === 0) expr.pop();
    s.expression = expr;
    if (lightChanged) s.lighting.sh = null;
    return s;
  };
  CH.json = function () { return JSON.stringify(CH.state()); };

  // ------------------------------------------------------------------ DOM
  function rangeOf(key) {
    return document.querySelector("#slider-" + key.replace(".", "-") + " input[type=range]");
  }
  // Gradio mounts a tab's sliders only when the tab is first opened: the page keeps every value
  // (CH.values); a slider that appears is given the page's value, a mounted one is read.
  // Gradio can set a freshly mounted slider back to its own (stale) value a few frames after
  // the page wrote it, so for SETTLE_MS after mounting the page's value wins.
  const SETTLE_MS = 400;
  const mounted = new WeakMap(); // element -> time it was first seen
  function readSliders() {
    let changed = false;
    const now = performance.now();
    for (const spec of CH.specs) {
      const el = rangeOf(spec.key);
      if (!el) continue;
      if (!mounted.has(el)) mounted.set(el, now);
      if (now - mounted.get(el) < SETTLE_MS) {
        const mine = CH.values[spec.key];
        if (mine !== undefined) { if (parseFloat(el.value) !== mine) writeSlider(el, mine); continue; }
      }
      const v = parseFloat(el.value);
      if (!Number.isFinite(v)) continue;
      if (CH.values[spec.key] !== v) { CH.values[spec.key] = v; changed = true; }
    }
    return changed;
  }
  function writeSlider(el, v) {
    applying = true;
    el.value = String(v);
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
    applying = false;
  }
  // Set sliders from here (undo/redo, pose presets): through the element so Gradio's value follows.
  CH.setValues = function (vals) {
    for (const [key, v] of Object.entries(vals)) {
      const spec = CH.specs.find((s) => s.key === key);
      const snapped = spec ? snap(spec, v) : v;
      const el = rangeOf(key);
      if (el) writeSlider(el, snapped);
      CH.values[key] = snapped;
    }
    changedNow();
  };
  function snap(spec, v) {
    v = Math.min(Math.max(v, spec.lo), spec.hi);
    const d = spec.step < 1 ? Math.max(0, -Math.floor(Math.log10(spec.step) + 1e-9)) : 0;
    return +(Math.round(v / spec.step) * spec.step).toFixed(d);
  }
  // The server's messages (state box): {nonce, state, payload, fit?, photo?, history?}.
  //   fit: the fitted state of the photo in use (sent with a new photo); history: "reset" starts the
  //   undo history at this state (a new photo), false leaves the history alone.
  function readServerBox() {
    const box = document.querySelector("#head-state textarea, #head-state input");
    if (!box || !box.value) return false;
    let msg;
    try { msg = JSON.parse(box.value); } catch (e) { return false; }
    if (!msg || msg.nonce === CH.nonce) return false;
    if (!msg.state) return false;
    CH.nonce = msg.nonce;
    if (msg.fit) CH.fit = msg.fit;
    if (msg.photo !== undefined) CH.photo = msg.photo;
    if (msg.payload && msg.payload !== CH.payloadUrl) { CH.payloadUrl = msg.payload; loadPayload(msg.payload); }
    adopt(msg.state, msg.history === "reset" ? "reset" : msg.history === false ? "none" : "push");
    return true;
  }

  // A new base state: every slider shows it (rounded to its step), the state keeps its exact values.
  // history "push": an undo step; "reset": the history starts here; "none": no history entry.
  function adopt(state, history) {
    CH.base = clone(state);
    const vals = {};
    for (const spec of CH.specs) vals[spec.key] = valueOf(CH.base, spec);
    CH.setValues(vals);
    lastCommitted = null;
    const json = CH.json();
    if (history === "reset") { CH.history = [json]; CH.future = []; updateUndoButtons(); }
    else if (history === "push") pushHistory(json);
    dirty = true; lastInput = 0;
  }
  CH.adopt = adopt;

  // ------------------------------------------------------------------ commit / history
  function commitButton() { return document.querySelector("#commit-state"); }
  CH.commit = function () {
    const json = CH.json();
    dirty = false;
    if (json === lastCommitted) return false;
    lastCommitted = json;
    pushHistory(json);
    const b = commitButton();
    if (b) { CH.stats.commits += 1; b.click(); }
    return true;
  };
  function pushHistory(json) {
    if (CH.history.length && CH.history[CH.history.length - 1] === json) return;
    CH.history.push(json);
    if (CH.history.length > 100) CH.history.shift();
    CH.future = [];
    updateUndoButtons();
  }
  function valueOf(s, spec) {
    const [group, name] = spec.key.split(".");
    if (group === "pose") return s.pose[name] || 0;
    if (group === "expr") return (s.expression_controls || {})[name] || 0;
    if (group === "light") return s.lighting[name];
    if (group === "place") return s.placement[name];
    return (s.expression || [])[+name] || 0;
  }
  function setField(s, key, v) {
    const [group, name] = key.split(".");
    if (group === "pose") s.pose[name] = v;
    else if (group === "expr") { s.expression_controls = s.expression_controls || {}; s.expression_controls[name] = v; }
    else if (group === "light") { if (s.lighting[name] !== v) s.lighting.sh = null; s.lighting[name] = v; }
    else if (group === "place") s.placement[name] = v;
    else { s.expression = (s.expression || []).slice(); while (s.expression.length <= +name) s.expression.push(0); s.expression[+name] = v; }
  }
  CH.undo = function () {
    if (dirty) CH.commit();
    if (CH.history.length < 2) return false;
    CH.future.push(CH.history.pop());
    adopt(JSON.parse(CH.history[CH.history.length - 1]), "none");
    updateUndoButtons();
    return true;
  };
  CH.redo = function () {
    if (!CH.future.length) return false;
    const next = CH.future.pop();
    CH.history.push(next);
    adopt(JSON.parse(next), "none");
    updateUndoButtons();
    return true;
  };
  CH.commitSoon = function () { dirty = true; lastInput = 0; };
  function updateUndoButtons() {
    const u = document.querySelector("#undo button, button#undo"), r = document.querySelector("#redo button, button#redo");
    if (u) u.disabled = CH.history.length < 2;
    if (r) r.disabled = CH.future.length === 0;
  }
  CH.updateUndoButtons = updateUndoButtons;
  // Every change below starts from the state on screen and changes only what it names: the
  // placement (the head's scale and shift on the photo) is never touched unless named.
  function edit(fn) {
    if (dirty) CH.commit();
    const s = CH.state();
    fn(s);
    adopt(s, "push");
    CH.commit();
  }
  CH.pose = function (yaw, pitch, roll) {
    edit((s) => { s.pose.yaw = yaw; s.pose.pitch = pitch; s.pose.roll = roll; });
  };
  function fitted() { return CH.fit || neutralState(); }
  // "Reset to neutral": pose, expression and light neutral; identity (shape, albedo) and placement stay.
  CH.resetNeutral = function () {
    const n = neutralState();
    edit((s) => { s.pose = n.pose; s.expression = []; s.expression_controls = {}; s.lighting = n.lighting; });
  };
  // "Reset to photo": pose, expression and light as fitted to the photo in use; placement stays.
  CH.resetPhoto = function () {
    const f = clone(fitted());
    edit((s) => { s.pose = f.pose; s.expression = f.expression; s.expression_controls = f.expression_controls || {};
      s.lighting = f.lighting; s.shape = f.shape; s.albedo = f.albedo; });
  };
  // "Put the head back on the face": the fitted placement (only this changes the placement).
  CH.resetPlacement = function () {
    const f = fitted();
    edit((s) => { s.placement = clone(f.placement); });
  };
  // A slider's ↺: that one control back to the photo's fitted value.
  CH.resetControl = function (key) {
    const spec = CH.specs.find((x) => x.key === key);
    if (!spec) return false;
    const v = valueOf(fitted(), spec);
    edit((s) => setField(s, key, v));
    return true;
  };
  // Drag on the head: yaw / pitch (with Shift: roll), in degrees, on top of where the drag began.
  CH.turn = function (start, dyaw, dpitch, droll) {
    const vals = {};
    const lim = (k, v) => { const sp = CH.specs.find((x) => x.key === k); return Math.min(Math.max(v, sp.lo), sp.hi); };
    vals["pose.yaw"] = lim("pose.yaw", start.yaw + dyaw);
    vals["pose.pitch"] = lim("pose.pitch", start.pitch + dpitch);
    vals["pose.roll"] = lim("pose.roll", start.roll + droll);
    for (const [k, v] of Object.entries(vals)) setField(CH.base, k, Math.round(v));
    CH.setValues(vals);
  };

  // ------------------------------------------------------------------ payload
  function f32(b64) { const b = bytes(b64); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); }
  function u32(b64) { const b = bytes(b64); return new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4); }
  function bytes(b64) {
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function loadPayload(url) {
    const abs = new URL(url, document.baseURI).href;
    fetch(abs).then((r) => r.json()).then((p) => {
      if (url !== CH.payloadUrl) return;
      const V = p.num_vertices, K = p.blend_names.length, J = p.num_joints;
      const head = {
        V, K, J, F: p.num_faces, faces: u32(p.faces), base: f32(p.base), blend: f32(p.blend),
        joints: f32(p.joints), blendJoints: f32(p.blend_joints), parents: p.parents, weights: f32(p.weights),
        posedirs: p.posedirs ? f32(p.posedirs) : null, colors: bytes(p.colors), pivot: p.pivot,
        baseScale: p.base_scale, shc: p.sh_constants, names: p.blend_names, jawPerOpen: p.mouth_open_jaw_degrees,
        photo: null,
      };
      head.shaped = new Float32Array(V * 3);
      head.posed = new Float32Array(V * 3);
      head.normals = new Float32Array(V * 3);
      if (p.photo) {
        head.photo = { uv: f32(p.photo.uv), vis: bytes(p.photo.visibility), skin: p.photo.skin, image: null };
        const img = new Image();
        img.onload = () => { head.photo.image = img; uploadPhoto(img); CH.redraw(); };
        img.src = "data:image/jpeg;base64," + p.photo.jpeg;
      }
      CH.head = head;
      uploadStatic(head);
      CH.redraw();
    }).catch((e) => console.error("live head payload", e));
  }

  // ------------------------------------------------------------------ geometry (per frame)
  function rot(ax, ay, az) { // Rodrigues, row-major 3x3
    const t = Math.hypot(ax, ay, az);
    if (t < 1e-12) return [1, 0, 0, 0, 1, 0, 0, 0, 1];
    const x = ax / t, y = ay / t, z = az / t, c = Math.cos(t), s = Math.sin(t), C = 1 - c;
    return [c + x * x * C, x * y * C - z * s, x * z * C + y * s,
      y * x * C + z * s, c + y * y * C, y * z * C - x * s,
      z * x * C - y * s, z * y * C + x * s, c + z * z * C];
  }
  function mul3(a, b) {
    const o = new Array(9);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++)
      o[i * 3 + j] = a[i * 3] * b[j] + a[i * 3 + 1] * b[3 + j] + a[i * 3 + 2] * b[6 + j];
    return o;
  }
  const D = Math.PI / 180;
  function ypr(yaw, pitch, roll) { // caphuman/controls/pose.py: Ry(yaw) Rx(-pitch) Rz(-roll)
    return mul3(mul3(rot(0, yaw * D, 0), rot(-pitch * D, 0, 0)), rot(0, 0, -roll * D));
  }

  CH.update = function (state) {
    const h = CH.head;
    if (!h) return;
    const t0 = performance.now();
    const { V, K, J } = h;
    // 1. blendshapes (slider-driven expression directions) on the shaped base
    const coeff = new Float32Array(K);
    for (let k = 0; k < K; k++) {
      const [g, n] = h.names[k].split(".");
      coeff[k] = g === "expr" ? (state.expression_controls[n] || 0) : (state.expression[+n] || 0);
    }
    const v = h.shaped;
    v.set(h.base);
    const n3 = V * 3;
    for (let k = 0; k < K; k++) {
      const c = coeff[k];
      if (!c) continue;
      const off = k * n3, b = h.blend;
      for (let i = 0; i < n3; i++) v[i] += c * b[off + i];
    }
    const joints = new Float32Array(h.joints);
    for (let k = 0; k < K; k++) if (coeff[k]) for (let i = 0; i < J * 3; i++) joints[i] += coeff[k] * h.blendJoints[k * J * 3 + i];
    // 2. joint rotations: global, neck, jaw, eyes
    const jaw = state.pose.jaw + h.jawPerOpen * (state.expression_controls.mouth_open || 0);
    const R = [ypr(state.pose.yaw, state.pose.pitch, state.pose.roll), rot(0, 0, 0), rot(jaw * D, 0, 0)];
    // eyes (joints 3, 4): caphuman/controls/pose.py eye_axis_angle = Ry(eye_yaw) Rx(-eye_pitch)
    const eyes = ypr(state.pose.eye_yaw || 0, state.pose.eye_pitch || 0, 0);
    while (R.length < J) R.push(eyes);
    // pose correctives
    if (h.posedirs) {
      const feat = [];
      for (let j = 1; j < J; j++) for (let e = 0; e < 9; e++) feat.push(R[j][e] - (e % 4 === 0 ? 1 : 0));
      const P = feat.length, pd = h.posedirs;
      for (let i = 0; i < n3; i++) { let acc = 0; const o = i * P; for (let q = 0; q < P; q++) acc += pd[o + q] * feat[q]; v[i] += acc; }
    }
    // 3. kinematic chain -> skinning transforms (3x4 row-major)
    const world = [], skin = new Float32Array(J * 12);
    for (let j = 0; j < J; j++) {
      const p = h.parents[j];
      const jx = joints[j * 3], jy = joints[j * 3 + 1], jz = joints[j * 3 + 2];
      let Rw, tw;
      if (j === 0 || p < 0) { Rw = R[j]; tw = [jx, jy, jz]; } else {
        const rx = jx - joints[p * 3], ry = jy - joints[p * 3 + 1], rz = jz - joints[p * 3 + 2];
        const P = world[p];
        Rw = mul3(P.R, R[j]);
        tw = [P.R[0] * rx + P.R[1] * ry + P.R[2] * rz + P.t[0], P.R[3] * rx + P.R[4] * ry + P.R[5] * rz + P.t[1],
          P.R[6] * rx + P.R[7] * ry + P.R[8] * rz + P.t[2]];
      }
      world.push({ R: Rw, t: tw });
      for (let r = 0; r < 3; r++) {
        skin[j * 12 + r * 4] = Rw[r * 3]; skin[j * 12 + r * 4 + 1] = Rw[r * 3 + 1]; skin[j * 12 + r * 4 + 2] = Rw[r * 3 + 2];
        skin[j * 12 + r * 4 + 3] = tw[r] - (Rw[r * 3] * jx + Rw[r * 3 + 1] * jy + Rw[r * 3 + 2] * jz);
      }
    }
    // 4. linear blend skinning
    const out = h.posed, w = h.weights, T = new Float32Array(12);
    for (let i = 0; i < V; i++) {
      T.fill(0);
      for (let j = 0; j < J; j++) {
        const wj = w[i * J + j];
        if (!wj) continue;
        for (let e = 0; e < 12; e++) T[e] += wj * skin[j * 12 + e];
      }
      const x = v[i * 3], y = v[i * 3 + 1], z = v[i * 3 + 2];
      out[i * 3] = T[0] * x + T[1] * y + T[2] * z + T[3];
      out[i * 3 + 1] = T[4] * x + T[5] * y + T[6] * z + T[7];
      out[i * 3 + 2] = T[8] * x + T[9] * y + T[10] * z + T[11];
    }
    // 5. area-weighted vertex normals (caphuman/render/maps.py)
    const nrm = h.normals, f = h.faces;
    nrm.fill(0);
    for (let q = 0; q < h.F; q++) {
      const a = f[q * 3] * 3, b = f[q * 3 + 1] * 3, c = f[q * 3 + 2] * 3;
      const e1x = out[b] - out[a], e1y = out[b + 1] - out[a + 1], e1z = out[b + 2] - out[a + 2];
      const e2x = out[c] - out[a], e2y = out[c + 1] - out[a + 1], e2z = out[c + 2] - out[a + 2];
      const nx = e1y * e2z - e1z * e2y, ny = e1z * e2x - e1x * e2z, nz = e1x * e2y - e1y * e2x;
      nrm[a] += nx; nrm[a + 1] += ny; nrm[a + 2] += nz;
      nrm[b] += nx; nrm[b + 1] += ny; nrm[b + 2] += nz;
      nrm[c] += nx; nrm[c + 1] += ny; nrm[c + 2] += nz;
    }
    for (let i = 0; i < n3; i += 3) {
      const l = Math.max(Math.hypot(nrm[i], nrm[i + 1], nrm[i + 2]), 1e-6);
      nrm[i] /= l; nrm[i + 1] /= l; nrm[i + 2] /= l;
    }
    uploadDynamic(h);
    const ms = performance.now() - t0;
    CH.stats.updateMs.push(ms);
    if (CH.stats.updateMs.length > 600) CH.stats.updateMs.shift();
  };

  // ------------------------------------------------------------------ WebGL2
  let gl = null, prog = null, bgProg = null, vao = null, bgVao = null, buf = {}, photoTex = null, canvas = null;
  const VS = `#version 300 es
in vec3 a_pos; in vec3 a_nrm; in vec3 a_col; in vec2 a_uv; in float a_vis;
uniform float u_a; uniform vec3 u_b;
out vec3 v_nrm; out vec3 v_col; out vec2 v_uv; out float v_vis;
void main() {
  vec3 p = a_pos * u_a + u_b;
  gl_Position = vec4(p.xy, -p.z / 32.0, 1.0);
  v_nrm = a_nrm; v_col = a_col; v_uv = a_uv; v_vis = a_vis;
}`;
  const FS = `#version 300 es
precision highp float;
in vec3 v_nrm; in vec3 v_col; in vec2 v_uv; in float v_vis;
uniform vec3 u_sh[9]; uniform int u_mode; uniform float u_opacity; uniform int u_hasPhoto;
uniform sampler2D u_photo; uniform vec3 u_skin; uniform vec3 u_shade0; uniform vec2 u_res; uniform float u_dim;
out vec4 o;
vec3 shade(vec3 n) {
  return u_sh[0] + u_sh[1]*n.x + u_sh[2]*n.y + u_sh[3]*n.z + u_sh[4]*(n.x*n.y) + u_sh[5]*(n.x*n.z)
       + u_sh[6]*(n.y*n.z) + u_sh[7]*(n.x*n.x - n.y*n.y) + u_sh[8]*(3.0*n.z*n.z - 1.0);
}
void main() {
  if (u_mode == 2) { o = vec4(1.0); return; }
  vec3 s = shade(v_nrm);
  vec3 head = clamp(v_col * s, 0.0, 1.0);
  if (u_mode == 1 && u_hasPhoto == 1) {
    vec3 tex = mix(u_skin, texture(u_photo, v_uv).rgb, clamp(v_vis, 0.0, 1.0));
    head = clamp(tex * s / max(u_shade0, vec3(0.05)), 0.0, 1.0);
  }
  vec2 q = vec2(gl_FragCoord.x / u_res.x, 1.0 - gl_FragCoord.y / u_res.y);
  vec3 back = u_hasPhoto == 1 ? texture(u_photo, q).rgb * u_dim : vec3(mix(70.0, 40.0, q.y) / 255.0);
  o = vec4(mix(back, head, u_opacity), 1.0);
}`;
  const BG_VS = `#version 300 es
in vec2 a_xy; void main() { gl_Position = vec4(a_xy, 0.999, 1.0); }`;
  const BG_FS = `#version 300 es
precision highp float;
uniform int u_hasPhoto; uniform sampler2D u_photo; uniform vec2 u_res; uniform float u_dim; out vec4 o;
void main() {
  vec2 q = vec2(gl_FragCoord.x / u_res.x, 1.0 - gl_FragCoord.y / u_res.y);
  o = vec4(u_hasPhoto == 1 ? texture(u_photo, q).rgb * u_dim : vec3(mix(70.0, 40.0, q.y) / 255.0), 1.0);
}`;
  function compile(vs, fs) {
    const p = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
      const s = gl.createShader(type);
      gl.shaderSource(s, src); gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      gl.attachShader(p, s);
    }
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
    return p;
  }
  function ensureGL() {
    const c = document.querySelector("#live-canvas");
    if (!c) return false;
    if (c === canvas && gl) return true;
    canvas = c;
    c.width = SIZE; c.height = SIZE;
    gl = c.getContext("webgl2", { preserveDrawingBuffer: true, antialias: false, premultipliedAlpha: false });
    if (!gl) { c.parentElement.setAttribute("data-error", "WebGL2 is not available"); return false; }
    prog = compile(VS, FS);
    bgProg = compile(BG_VS, BG_FS);
    bgVao = gl.createVertexArray();
    gl.bindVertexArray(bgVao);
    const q = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, q);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 3, -1, -1, 3]), gl.STATIC_DRAW);
    const loc = gl.getAttribLocation(bgProg, "a_xy");
    gl.enableVertexAttribArray(loc); gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
    gl.bindVertexArray(null);
    vao = null; photoTex = null;
    if (CH.head) { uploadStatic(CH.head); if (CH.head.photo && CH.head.photo.image) uploadPhoto(CH.head.photo.image); }
    return true;
  }
  function attrib(name, size, type, normalized, data, usage) {
    const b = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, b);
    gl.bufferData(gl.ARRAY_BUFFER, data, usage);
    const loc = gl.getAttribLocation(prog, name);
    if (loc >= 0) { gl.enableVertexAttribArray(loc); gl.vertexAttribPointer(loc, size, type, normalized, 0, 0); }
    return b;
  }
  function uploadStatic(h) {
    if (!gl && !ensureGL()) return;
    vao = gl.createVertexArray();
    gl.bindVertexArray(vao);
    buf.pos = attrib("a_pos", 3, gl.FLOAT, false, h.base, gl.DYNAMIC_DRAW);
    buf.nrm = attrib("a_nrm", 3, gl.FLOAT, false, new Float32Array(h.V * 3), gl.DYNAMIC_DRAW);
    attrib("a_col", 3, gl.UNSIGNED_BYTE, true, h.colors, gl.STATIC_DRAW);
    attrib("a_uv", 2, gl.FLOAT, false, h.photo ? h.photo.uv : new Float32Array(h.V * 2), gl.STATIC_DRAW);
    attrib("a_vis", 1, gl.UNSIGNED_BYTE, true, h.photo ? h.photo.vis : new Uint8Array(h.V), gl.STATIC_DRAW);
    const ib = gl.createBuffer();
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, ib);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, h.faces, gl.STATIC_DRAW);
    gl.bindVertexArray(null);
    h.uploaded = false;
  }
  function uploadDynamic(h) {
    if (!gl || !vao) return;
    gl.bindBuffer(gl.ARRAY_BUFFER, buf.pos); gl.bufferSubData(gl.ARRAY_BUFFER, 0, h.posed);
    gl.bindBuffer(gl.ARRAY_BUFFER, buf.nrm); gl.bufferSubData(gl.ARRAY_BUFFER, 0, h.normals);
    h.uploaded = true;
  }
  function uploadPhoto(img) {
    if (!gl) return;
    photoTex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, photoTex);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, img);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  }

  // caphuman/render/shading.py directional_sh (times SH_CONSTANTS), or the state's raw SH.
  function lightSH(state, shc) {
    const L = state.lighting;
    let sh;
    if (L.sh) sh = L.sh.map((r) => r.slice());
    else {
      const az = L.azimuth * D, el = L.elevation * D;
      const d = [Math.cos(el) * Math.sin(az), Math.sin(el), Math.cos(el) * Math.cos(az)];
      const [x, y, z] = d, PI = Math.PI;
      const Y = [0.5 * Math.sqrt(1 / PI), Math.sqrt(3 / (4 * PI)), Math.sqrt(3 / (4 * PI)), Math.sqrt(3 / (4 * PI)),
        0.5 * Math.sqrt(15 / PI), 0.5 * Math.sqrt(15 / PI), 0.5 * Math.sqrt(15 / PI), 0.25 * Math.sqrt(15 / PI),
        0.25 * Math.sqrt(5 / PI)];
      const basis = [1, x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1];
      const rad = Y.map((c, k) => c * basis[k]);
      rad[0] *= PI;
      const col = L.color || [1, 1, 1];
      sh = rad.map((r, k) => {
        let v = L.intensity * r;
        if (k === 0) v += L.ambient / shc[0];
        return [v * col[0], v * col[1], v * col[2]];
      });
    }
    const out = new Float32Array(27);
    for (let k = 0; k < 9; k++) for (let c = 0; c < 3; c++) out[k * 3 + c] = sh[k][c] * shc[k];
    return out;
  }

  CH.draw = function (state, mode) {
    if (!ensureGL()) return false;
    const h = CH.head;
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.disable(gl.CULL_FACE);
    gl.clearColor(0, 0, 0, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    const hasPhoto = !!(h && h.photo && h.photo.image && photoTex);
    const textured = mode === undefined ? (CH.view.textured ? 1 : 0) : mode;
    const dim = textured === 1 ? 1.0 : DIM;
    if (textured !== 2) {
      gl.useProgram(bgProg);
      gl.uniform1i(gl.getUniformLocation(bgProg, "u_hasPhoto"), hasPhoto ? 1 : 0);
      gl.uniform2f(gl.getUniformLocation(bgProg, "u_res"), canvas.width, canvas.height);
      gl.uniform1f(gl.getUniformLocation(bgProg, "u_dim"), dim);
      if (hasPhoto) { gl.activeTexture(gl.TEXTURE0); gl.bindTexture(gl.TEXTURE_2D, photoTex); }
      gl.uniform1i(gl.getUniformLocation(bgProg, "u_photo"), 0);
      gl.disable(gl.DEPTH_TEST);
      gl.bindVertexArray(bgVao);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
    }
    if (!h || !vao || !h.uploaded) return false;
    gl.enable(gl.DEPTH_TEST);
    gl.depthFunc(gl.LEQUAL);
    gl.useProgram(prog);
    const a = state.placement.scale * h.baseScale;
    const u = (n) => gl.getUniformLocation(prog, n);
    gl.uniform1f(u("u_a"), a);
    gl.uniform3f(u("u_b"), state.placement.shift_x - a * h.pivot[0], state.placement.shift_y - a * h.pivot[1], -a * h.pivot[2]);
    const sh = lightSH(state, h.shc);
    gl.uniform3fv(u("u_sh"), sh);
    // reference brightness for the textured head: the default light on a frontal normal
    const s0 = lightSH(neutralState(), h.shc);
    const shade0 = [0, 1, 2].map((c) => s0[c] + s0[9 + c] + s0[24 + c] * 2);
    gl.uniform3fv(u("u_shade0"), shade0);
    gl.uniform1i(u("u_mode"), textured);
    gl.uniform1f(u("u_opacity"), textured === 2 ? 1.0 : CH.view.opacity);
    gl.uniform1i(u("u_hasPhoto"), hasPhoto ? 1 : 0);
    gl.uniform3fv(u("u_skin"), hasPhoto ? h.photo.skin : [0.7, 0.55, 0.45]);
    gl.uniform2f(u("u_res"), canvas.width, canvas.height);
    gl.uniform1f(u("u_dim"), dim);
    if (hasPhoto) { gl.activeTexture(gl.TEXTURE0); gl.bindTexture(gl.TEXTURE_2D, photoTex); }
    gl.uniform1i(u("u_photo"), 0);
    gl.bindVertexArray(vao);
    gl.drawElements(gl.TRIANGLES, h.F * 3, gl.UNSIGNED_INT, 0);
    gl.bindVertexArray(null);
    return true;
  };

  CH.redraw = function () {
    const s = CH.state();
    CH.update(s);
    if (CH.draw(s)) { CH.stats.frames += 1; CH.stats.lastFrameT = performance.now(); CH.stats.lastYaw = s.pose.yaw; }
  };

  // Test / benchmark hook: draw a given state (or the current one) in a mode (0 shaded, 1 textured,
  // 2 mask) and return the RGBA pixels (bottom row first) as base64.
  CH.snapshot = function (state, mode) {
    state = state || CH.state();
    CH.update(state);
    CH.draw(state, mode);
    const w = canvas.width, hgt = canvas.height, px = new Uint8Array(w * hgt * 4);
    gl.readPixels(0, 0, w, hgt, gl.RGBA, gl.UNSIGNED_BYTE, px);
    let s = "";
    for (let i = 0; i < px.length; i += 0x8000) s += String.fromCharCode.apply(null, px.subarray(i, i + 0x8000));
    CH.redraw();
    return { width: w, height: hgt, rgba: btoa(s) };
  };
  CH.ready = function () { return !!(CH.head && CH.head.uploaded && canvas && (!CH.head.photo || CH.head.photo.image)); };

  // ------------------------------------------------------------------ loop
  let unseen = false; // a change was drawn but its frame is not on screen yet
  function changedNow() {
    dirty = true;
    lastInput = performance.now();
    CH.redraw();
    unseen = true;
  }
  function tick() {
    try {
      // the first animation frame after a change: it is on screen now; the pause starts here (a
      // slow frame never counts as the user pausing)
      if (unseen) { unseen = false; lastInput = performance.now(); }
      const fromServer = readServerBox();
      const moved = readSliders();
      if (moved) changedNow();
      else if (fromServer) CH.redraw();
      else if (CH.head && !CH.head.uploaded) CH.redraw();
      if ((CH.stats.ticks = (CH.stats.ticks || 0) + 1) % 15 === 0) { updateUndoButtons(); stickTabs(); }
      const now = performance.now();
      if (dirty && !pointerDown && !applying && !unseen && now - lastInput > KEY_IDLE_MS) CH.commit();
    } catch (e) { console.error("live head", e); }
    requestAnimationFrame(tick);
  }
  function keyOf(el) {
    const block = el && el.closest && el.closest("[id^=slider-]");
    return block ? block.id.slice(7).replace("-", ".") : null;
  }
  document.addEventListener("input", (e) => {
    const t = e.target;
    if (!t || !t.closest) return;
    if (t.type === "range" && t.closest("[id^=slider-]") && !applying) {
      if (readSliders()) changedNow();
    } else if (t.type === "number" && t.closest("[id^=slider-]") && CH.specs.find((x) => x.key === keyOf(t))) {
      // typing in a slider's box: nothing moves until Enter or leaving the box (an incomplete
      // number such as "-" never reaches the head); see applyTyped
      e.stopImmediatePropagation();
    }
  }, true);

  // ------------------------------------------------------------------ typed values
  const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;
  function fmt(v) { return String(+(+v).toFixed(4)); }
  function note(key, text) {
    const block = document.querySelector("#slider-" + key.replace(".", "-"));
    if (!block) return;
    let n = block.querySelector(".ch-note");
    if (!text) { if (n) n.remove(); return; }
    if (!n) { n = document.createElement("div"); n.className = "ch-note"; n.setAttribute("role", "status"); block.appendChild(n); }
    n.textContent = text;
    clearTimeout(n._t);
    n._t = setTimeout(() => n.remove(), 8000);
  }
  CH.note = note;
  function applyTyped(box) {
    const key = keyOf(box), spec = CH.specs.find((x) => x.key === key);
    if (!spec) return;
    const text = String(box.value).trim(), current = valueOf(CH.state(), spec);
    if ((box.validity && box.validity.badInput) || !NUMBER.test(text) || !Number.isFinite(parseFloat(text))) {
      box.value = fmt(snap(spec, current));
      note(key, `${text ? `"${text.slice(0, 12)}" is ` : ""}not a number; kept ${fmt(current)} ` +
        `(type a number from ${fmt(spec.lo)} to ${fmt(spec.hi)})`);
      return;
    }
    let v = parseFloat(text);
    if (v < spec.lo || v > spec.hi) {
      const c = Math.min(Math.max(v, spec.lo), spec.hi);
      note(key, `${fmt(v)} is outside ${fmt(spec.lo)} to ${fmt(spec.hi)}; using ${fmt(c)}`);
      v = c;
    } else if (v === current) { box.value = fmt(snap(spec, v)); return; } // nothing typed (e.g. leaving the box)
    else note(key, "");
    if (v === current) { box.value = fmt(snap(spec, v)); return; }
    edit((s) => setField(s, key, v));
    box.value = fmt(snap(spec, v));
  }
  document.addEventListener("change", (e) => {
    const t = e.target;
    if (t && t.type === "number" && keyOf(t) && CH.specs.find((x) => x.key === keyOf(t))) {
      e.stopImmediatePropagation();
      applyTyped(t);
    }
  }, true);
  // blur (capture: before Gradio's own handler resets the box), not focusout (after it)
  document.addEventListener("blur", (e) => {
    const t = e.target;
    if (t && t.type === "number" && keyOf(t) && CH.specs.find((x) => x.key === keyOf(t))) applyTyped(t);
  }, true);
  // a slider's ↺ returns that control to the photo's fitted value (not the page's default)
  document.addEventListener("click", (e) => {
    const b = e.target && e.target.closest && e.target.closest("button.reset-button");
    const key = b && keyOf(b);
    if (!key || !CH.specs.find((x) => x.key === key)) return;
    e.preventDefault(); e.stopImmediatePropagation();
    note(key, "");
    CH.resetControl(key);
  }, true);

  // ------------------------------------------------------------------ pointer / keys
  let drag = null;
  document.addEventListener("pointerdown", (e) => {
    const t = e.target;
    if (!t || !t.closest) return;
    if (t.closest("[id^=slider-]")) { pointerDown = true; return; }
    if (t.id === "live-canvas" && CH.head) {
      // drag on the head turns it: across = yaw, up/down = pitch; with Shift (or Alt): roll
      if (dirty) CH.commit();
      const s = CH.state();
      drag = { x: e.clientX, y: e.clientY, w: t.clientWidth || 1, h: t.clientHeight || 1,
        start: { yaw: s.pose.yaw, pitch: s.pose.pitch, roll: s.pose.roll }, id: e.pointerId };
      pointerDown = true;
      try { t.setPointerCapture(e.pointerId); } catch (err) { /* synthetic pointer */ }
      e.preventDefault();
    }
  }, true);
  document.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = (e.clientX - drag.x) / drag.w, dy = (e.clientY - drag.y) / drag.h;
    if (e.shiftKey || e.altKey) CH.turn(drag.start, 0, 0, dx * 120);
    else CH.turn(drag.start, dx * 180, -dy * 120, 0);
  }, true);
  document.addEventListener("pointerup", () => {
    drag = null;
    if (!pointerDown) return;
    pointerDown = false;
    setTimeout(() => { readSliders(); if (dirty) { CH.redraw(); CH.commit(); } }, 0);
  }, true);
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && t.type === "range" && t.closest && t.closest("[id^=slider-]")) lastInput = performance.now();
    if (t && t.type === "number" && (e.key === "Enter" || e.key === "Tab") && keyOf(t) &&
        CH.specs.find((x) => x.key === keyOf(t))) {
      if (e.key === "Enter") e.preventDefault();
      applyTyped(t);
      return;
    }
    const typing = t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "range"));
    if (typing) return;
    if (t && t.id === "live-canvas" && e.key.startsWith("Arrow")) {
      // arrows on the focused head: 5 degrees of yaw / pitch (Shift: roll)
      e.preventDefault();
      const s = CH.state(), d = 5, k = e.key;
      const dyaw = k === "ArrowRight" ? d : k === "ArrowLeft" ? -d : 0, dp = k === "ArrowUp" ? d : k === "ArrowDown" ? -d : 0;
      const st = { yaw: s.pose.yaw, pitch: s.pose.pitch, roll: s.pose.roll };
      if (e.shiftKey) CH.turn(st, 0, 0, dyaw); else CH.turn(st, dyaw, dp, 0);
      return;
    }
    if (!(e.ctrlKey || e.metaKey)) return;
    const z = e.key.toLowerCase();
    if (z !== "z" && z !== "y") return;
    e.preventDefault();
    if (e.shiftKey || z === "y") CH.redo(); else CH.undo();
  });
  // Phone: the head is pinned at the top; the controls' tab bar stays reachable just under it
  // while their sliders scroll by (CSS sticky cannot: Gradio's container clips overflow).
  function stickTabs() {
    const tabs = document.querySelector("#controls-tabs"), head = document.querySelector("#live-head");
    const bar = tabs && tabs.querySelector(".tab-wrapper");
    if (!bar || !head) return;
    let off = 0;
    if (getComputedStyle(head).position === "fixed") {
      const r = tabs.getBoundingClientRect(), below = head.getBoundingClientRect().bottom;
      off = Math.max(0, Math.min(below - r.top, r.height - bar.offsetHeight - 40));
    }
    bar.style.transform = off > 0 ? `translateY(${off}px)` : "";
    bar.style.position = "relative";
    bar.style.zIndex = off > 0 ? "45" : "";
    bar.style.background = off > 0 ? "var(--background-fill-primary)" : "";
    bar.style.boxShadow = off > 0 ? "0 2px 4px rgba(0,0,0,0.15)" : "";
  }
  window.addEventListener("scroll", stickTabs, { passive: true });
  window.addEventListener("resize", stickTabs, { passive: true });
  CH.stickTabs = stickTabs;
  CH.setOpacity = function (v) { CH.view.opacity = +v; CH.redraw(); };
  CH.setTextured = function (t) { CH.view.textured = !!t; CH.redraw(); };
  requestAnimationFrame(tick);
})();
