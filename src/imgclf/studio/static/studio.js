// imgclf studio: hand-written, no framework, nothing fetched from elsewhere.
"use strict";

const TOKEN = document.querySelector('meta[name="studio-token"]').content;
const $ = (id) => document.getElementById(id);
const PAGE = 24;            // thumbnails per label page
const RECORD_EVERY = 250;   // ms between recorded camera frames (4 a second)
const SEND_EVERY = 4;       // recorded frames sent per request
const state = { labels: [], view: "teach", model: false, camera: null, live: false, lastAnswer: null, shown: {} };

// ---- talking to the studio ------------------------------------------------------------------------------------
async function api(path, { method = "GET", json, form, body } = {}) {
  const headers = { "x-studio-token": TOKEN };
  let payload = body;
  if (json !== undefined) { headers["content-type"] = "application/json"; payload = JSON.stringify(json); }
  if (form !== undefined) payload = form;
  const res = await fetch(path, { method, headers, body: payload });
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw new Error((data && data.detail) || `${res.status} ${res.statusText}`);
  return data;
}
const enc = encodeURIComponent;
const thumb = (path, side = 160) => `/api/photo?path=${enc(path)}&side=${side}`;
const pct = (x) => `${Math.round(x * 100)} %`;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);  // CSSOM: the page's policy refuses style attributes
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null) node.append(c.nodeType ? c : document.createTextNode(c));
  return node;
}

let noticeTimer;
function notice(text, kind = "info") {
  const n = $("notice");
  n.textContent = text; n.dataset.kind = kind; n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.hidden = true; }, kind === "error" ? 9000 : 5000);
}
async function attempt(fn) {
  try { return await fn(); } catch (e) { notice(e.message, "error"); return null; }
}

// ---- views ----------------------------------------------------------------------------------------------------
function show(view) {
  state.view = view;
  for (const v of ["landing", "teach", "results", "try", "export"]) $(`view-${v}`).hidden = v !== view;
  for (const b of $("tabs").querySelectorAll("button")) {
    if (b.dataset.view === view) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  }
  if (view !== "try") stopLive();
  if (view !== "teach") stopCamera();
  if (view === "results") loadResults();
  if (view === "export") loadExport();
  if (view === "try") fillCorrect();
}
$("tabs").addEventListener("click", (e) => { const v = e.target.closest("button")?.dataset.view; if (v) show(v); });

async function start() {
  const project = await api("/api/project");
  if (!project.open) return landing(project);
  $("project-name").textContent = `${project.name} · ${{ objects: "objects", several: "several things per photo", faces: "faces", verifier: "is it …?" }[project.kind]}`;
  $("tabs").hidden = false; $("actions").hidden = false;
  $("several-hint").hidden = project.kind !== "several";
  await refresh();
  rememberModel(await api("/api/results"));
  show("teach");
  pollTraining();
}

// ---- landing --------------------------------------------------------------------------------------------------
async function landing(project) {
  show("landing");
  $("home").textContent = project.home;
  const { projects } = await api("/api/projects");
  const list = $("recent");
  list.replaceChildren();
  if (!projects.length) list.append(el("li", { class: "muted" }, "None yet."));
  for (const p of projects) {
    list.append(el("li", {}, el("button", {
      type: "button", class: "linkish", disabled: !p.exists,
      onclick: () => attempt(async () => { await api("/api/projects/open", { method: "POST", json: { path: p.path } }); location.reload(); }),
    }, p.name), el("span", { class: "muted small" }, p.exists ? ` ${p.path}` : " (no longer there)")));
  }
}
document.querySelectorAll('input[name="kind"]').forEach((r) => r.addEventListener("change", () => {
  $("verifier-field").hidden = document.querySelector('input[name="kind"]:checked').value !== "verifier";
}));
$("new-project").addEventListener("submit", (e) => {
  e.preventDefault();
  const kind = document.querySelector('input[name="kind"]:checked').value;
  attempt(async () => {
    await api("/api/projects", { method: "POST", json: { name: $("new-name").value, kind, label: kind === "verifier" ? $("new-label").value : null } });
    location.reload();
  });
});

// ---- teach: labels and photos -----------------------------------------------------------------------------------
async function refresh() {
  const data = await api("/api/labels");
  state.labels = data.labels;
  $("undo").disabled = !data.undo;
  $("undo").title = data.undo ? `Undo: ${data.undo}` : "Nothing to undo";
  $("trash-line").replaceChildren();
  if (data.trash) {
    $("trash-line").append(`${data.trash} photo${data.trash === 1 ? " is" : "s are"} in the trash. `,
      el("button", { type: "button", class: "linkish", onclick: emptyTrash }, "Empty the trash"));
  }
  renderLabels();
  loadHistory();
}

function renderLabels() {
  const box = $("labels");
  const cards = new Map([...box.children].map((c) => [c.dataset.label, c]));
  $("empty-labels").hidden = state.labels.length > 0;
  const keep = new Set();
  for (const label of state.labels) {
    keep.add(label.name);
    let card = cards.get(label.name);
    if (!card) { card = labelCard(label.name); }
    box.append(card);  // keeps the order
    card.querySelector(".count").textContent = `${label.count} photo${label.count === 1 ? "" : "s"}`;
    loadThumbs(card, label.name, 0);
  }
  for (const [name, card] of cards) if (!keep.has(name)) card.remove();
}

function labelCard(name) {
  const files = el("input", { type: "file", accept: "image/*", multiple: true, hidden: true,
    onchange: (e) => { addFiles(name, [...e.target.files], "files"); e.target.value = ""; } });
  const folder = el("input", { type: "file", multiple: true, hidden: true, webkitdirectory: true,
    onchange: (e) => { addFiles(name, [...e.target.files], "a folder"); e.target.value = ""; } });
  const record = el("button", { type: "button", class: "btn record", disabled: !state.camera, title: "Hold to record frames from the camera" }, "● Hold to record");
  holdToRecord(record, name);
  const card = el("article", { class: "label-card", "data-label": name, tabindex: "0", "aria-label": `Label ${name}: drop photos here` },
    el("header", {},
      el("h3", {}, name), el("span", { class: "count muted" }),
      el("span", { class: "label-actions" },  // wrap together, to the right
        el("button", { type: "button", class: "icon", "aria-label": `Rename ${name}`, onclick: () => renameLabel(name) }, "Rename"),
        el("button", { type: "button", class: "icon", title: "Its photos go to the trash; Undo brings them back", "aria-label": `Remove ${name}`, onclick: () => removeLabel(name) }, "Remove"))),
    el("div", { class: "thumbs" }),
    el("div", { class: "card-actions" },
      el("button", { type: "button", class: "btn small", onclick: () => files.click() }, "Add photos"),
      el("button", { type: "button", class: "btn small", onclick: () => folder.click() }, "Add a folder"),
      record, el("span", { class: "recorded muted small", "aria-live": "polite" })),
    el("nav", { class: "pager" }), files, folder);
  for (const ev of ["dragenter", "dragover"]) card.addEventListener(ev, (e) => { e.preventDefault(); card.classList.add("over"); });
  card.addEventListener("dragleave", () => card.classList.remove("over"));
  card.addEventListener("drop", async (e) => { e.preventDefault(); card.classList.remove("over"); addFiles(name, await droppedFiles(e.dataTransfer), "dropped files"); });
  card.addEventListener("focusin", () => { state.pasteLabel = name; });
  return card;
}

async function loadThumbs(card, name, offset) {
  const page = await attempt(() => api(`/api/labels/${enc(name)}/photos?offset=${offset}&limit=${PAGE}`));
  if (!page) return;
  const grid = card.querySelector(".thumbs");
  grid.replaceChildren(...page.photos.map((p) => el("img", { src: thumb(p, 96), alt: p.split("/").pop(), loading: "lazy", title: p })));
  const pager = card.querySelector(".pager");
  pager.replaceChildren();
  if (page.total > PAGE) {
    const pages = Math.ceil(page.total / PAGE), at = Math.floor(offset / PAGE);
    pager.append(
      el("button", { type: "button", class: "btn small", disabled: at === 0, onclick: () => loadThumbs(card, name, offset - PAGE) }, "‹ Newer"),
      el("span", { class: "muted small" }, ` page ${at + 1} of ${pages} `),
      el("button", { type: "button", class: "btn small", disabled: at + 1 >= pages, onclick: () => loadThumbs(card, name, offset + PAGE) }, "Older ›"));
  }
}

async function droppedFiles(dt) {
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...dt.files];
  const out = [];
  async function walk(entry) {
    if (entry.isFile) out.push(await new Promise((ok, bad) => entry.file(ok, bad)));
    else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
        if (!batch.length) break;
        for (const e of batch) if (!e.name.startsWith(".")) await walk(e);
      }
    }
  }
  for (const e of entries) await walk(e);
  return out;
}

// One request of files into a label: one change, one undo. `files`: [blob, file name] pairs.
function postPhotos(label, files, source) {
  const form = new FormData();
  for (const [blob, name] of files) form.append("files", blob, name);
  return api(`/api/labels/${enc(label)}/photos?source=${enc(source)}`, { method: "POST", form });
}

// Files go in requests of a few MB each.
async function addFiles(label, files, source) {
  if (!files.length) return;
  let saved = 0; const refused = [], flagged = [];
  let batch = [], size = 0;
  const send = async () => {
    const r = await postPhotos(label, batch.map((f) => [f, f.name]), source);
    batch = []; size = 0;
    for (const a of r.arrivals) {
      if (a.saved) { saved++; if (a.copy_of || a.like) flagged.push(`${a.name} looks like ${a.copy_of || a.like}`); }
      else refused.push(`${a.name}: ${a.reason}`);
    }
  };
  await attempt(async () => {
    for (const f of files) {
      batch.push(f); size += f.size;
      if (batch.length >= 20 || size > 8e6) await send();
    }
    if (batch.length) await send();
  });
  let text = `Added ${saved} photo${saved === 1 ? "" : "s"} to ${label}.`;
  if (refused.length) text += ` Not added: ${refused.slice(0, 3).join("; ")}${refused.length > 3 ? ` and ${refused.length - 3} more` : ""}.`;
  if (flagged.length) text += ` Copies? ${flagged.slice(0, 2).join("; ")}.`;
  notice(text, refused.length ? "warn" : "info");
  await changed();
}

async function changed() {
  await refresh();
  if ($("auto-train").checked) startTraining();
}

function renameLabel(name) {
  const to = prompt(`New name for ${name}:`, name);
  if (to && to !== name) attempt(async () => { await api(`/api/labels/${enc(name)}/rename`, { method: "POST", json: { name: to } }); await changed(); });
}
function removeLabel(name) {
  attempt(async () => {
    await api(`/api/labels/${enc(name)}`, { method: "DELETE" });
    notice(`Removed ${name}: its photos are in the trash. Undo brings them back.`);
    await changed();
  });
}
async function emptyTrash() {
  if (!confirm("Delete the photos in the trash for good? This cannot be undone.")) return;
  const r = await attempt(() => api("/api/trash/empty", { method: "POST" }));
  if (r) { notice(`Deleted ${r.deleted} photo${r.deleted === 1 ? "" : "s"} from the trash.`); refresh(); }
}
$("add-label").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("label-name").value.trim();
  if (name) attempt(async () => { await api("/api/labels", { method: "POST", json: { name } }); $("label-name").value = ""; await changed(); });
});
$("undo").addEventListener("click", () => attempt(async () => {
  const r = await api("/api/undo", { method: "POST" });
  notice(`Done: ${r.change.summary}.`);
  await changed();
  if (state.view === "results") loadResults();
}));
async function loadHistory() {
  const data = await attempt(() => api("/api/history"));
  if (!data) return;
  $("history").replaceChildren(...data.changes.map((c) => el("li", { class: c.undone ? "undone" : "" },
    new Date(c.time * 1000).toLocaleTimeString(), " — ", c.summary, c.undone ? " (undone)" : "")));
}

// paste: into the label last touched (teach) or as a photo to try
document.addEventListener("paste", (e) => {
  const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
  if (!files.length) return;
  if (state.view === "try") tryFile(files[0]);
  else if (state.view === "teach" && state.pasteLabel) addFiles(state.pasteLabel, files, "the clipboard");
  else if (state.view === "teach") notice("Click a label first, then paste into it.", "warn");
});

// ---- the camera -------------------------------------------------------------------------------------------------
async function openCamera() {
  if (state.camera) return state.camera;
  if (!navigator.mediaDevices?.getUserMedia) throw new Error("this browser gives no camera to this page (it needs http://localhost or https)");
  state.camera = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  return state.camera;
}
function stopCamera() {
  if (state.live) return;
  if (state.camera) for (const t of state.camera.getTracks()) t.stop();
  state.camera = null;
  $("camera-panel").hidden = true;
  $("camera-toggle").textContent = "Turn camera on";
  document.querySelectorAll(".record").forEach((b) => { b.disabled = true; });
}
$("camera-toggle").addEventListener("click", () => attempt(async () => {
  if (state.camera) return stopCamera();
  const stream = await openCamera();
  $("teach-video").srcObject = stream;
  $("camera-panel").hidden = false;
  $("camera-toggle").textContent = "Turn camera off";
  document.querySelectorAll(".record").forEach((b) => { b.disabled = false; });
}));

function grab(video, width = 448) {
  const canvas = $("grab");
  const scale = width / video.videoWidth;
  canvas.width = width; canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.9));
}

function holdToRecord(button, label) {
  let timer = null, frames = [], count = 0, sending = Promise.resolve();
  const info = () => button.parentElement.querySelector(".recorded");
  const flush = () => {
    if (!frames.length) return;
    const batch = frames; frames = [];
    const named = batch.map((b, i) => [b, `camera-${Date.now()}-${i}.jpg`]);
    sending = sending.then(() => attempt(() => postPhotos(label, named, "camera")));
  };
  const begin = (e) => {
    e.preventDefault();
    if (timer || !state.camera) return;
    count = 0; button.classList.add("on");
    timer = setInterval(async () => {
      const blob = await grab($("teach-video"));
      if (!blob || !timer) return;  // released while this frame was being grabbed: not part of the recording
      frames.push(blob); count++;
      info().textContent = `${count} frame${count === 1 ? "" : "s"}`;
      if (frames.length >= SEND_EVERY) flush();
    }, RECORD_EVERY);
  };
  const end = async () => {
    if (!timer) return;
    clearInterval(timer); timer = null; button.classList.remove("on");
    flush();
    await sending;
    info().textContent = `${count} frame${count === 1 ? "" : "s"} added`;
    await changed();
  };
  button.addEventListener("pointerdown", begin);
  for (const ev of ["pointerup", "pointerleave", "pointercancel"]) button.addEventListener(ev, end);
  button.addEventListener("keydown", (e) => { if ((e.key === " " || e.key === "Enter") && !e.repeat) begin(e); });
  button.addEventListener("keyup", (e) => { if (e.key === " " || e.key === "Enter") end(); });
}

// ---- training -----------------------------------------------------------------------------------------------------
const STAGE_WORDS = { scan: "Finding photos", embed: "Looking at photos", dedupe: "Setting copies aside", check: "Checking photos",
  fit: "Learning", calibrate: "Calibrating", estimate: "Measuring", write: "Saving the model" };
async function startTraining() {
  const now = await attempt(() => api("/api/train"));
  if (now?.state === "running") {  // one run at a time: train again when this one ends, with every change since
    state.trainAgain = true;
    return pollTraining();
  }
  const s = await attempt(() => api("/api/train", { method: "POST" }));
  if (s) pollTraining();
}
$("train").addEventListener("click", startTraining);
$("cancel").addEventListener("click", () => attempt(() => api("/api/train/cancel", { method: "POST" })));

function modelStatus(s) {
  const at = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  $("model-status").textContent = s.state === "running" ? "Training…" :
    s.state === "done" ? `Trained ${at(s.finished)}, ${s.photos} photos` :
    s.state === "failed" ? "The last training failed" : state.model ? "Model ready" : "No model yet";
}

let polling = false;
async function pollTraining() {
  if (polling) return;
  polling = true;
  try {
    for (;;) {
      const s = await api("/api/train");
      const running = s.state === "running";
      $("progress").hidden = !running;
      $("train").disabled = running;
      if (running) {
        const stage = STAGE_WORDS[s.stage] || s.stage;
        const n = s.stages.indexOf(s.stage);
        $("progress-text").textContent = `${stage}${s.total ? ` ${s.done} of ${s.total}` : "…"}`;
        $("progress-fill").style.width = `${Math.round(100 * (n + (s.total ? s.done / s.total : 0)) / s.stages.length)}%`;
        await new Promise((ok) => setTimeout(ok, 150));
        continue;
      }
      modelStatus(s);
      if (s.runs && s.finished && s.finished !== state.finished) {
        state.finished = s.finished;
        if (s.state === "done") {
          rememberModel(await api("/api/results"));
          notice(`Trained on ${s.photos} photos in ${s.seconds} s. The new model is answering.`);
          if (state.view === "results") loadResults();
          if (state.view === "try") fillCorrect();
        } else if (s.state === "failed") notice(`Training did not finish: ${s.error}`, "error");
        else if (s.state === "cancelled") notice("Training cancelled: the model is as it was.", "warn");
      }
      break;
    }
  } catch (e) { notice(e.message, "error"); } finally { polling = false; }
  if (state.trainAgain) {
    state.trainAgain = false;
    startTraining();
  }
}

// ---- results ------------------------------------------------------------------------------------------------------
function rememberModel(r) {  // what the answers need to be said in plain words
  state.model = r.model;
  state.verifier = r.model && r.labels.length === 1;
  state.threshold = r.unknown?.threshold;
  state.sets = !!r.label_sets;
  state.thresholds = r.thresholds || null;  // several labels per photo: the probability each label needs
}
async function loadResults() {
  const r = await attempt(() => api("/api/results"));
  if (!r) return;
  rememberModel(r);
  $("no-model").hidden = r.model; $("results").hidden = !r.model;
  if (!r.model) return;
  const est = r.estimate || {};
  const only = r.labels[0];
  const several = r.multi_label;
  if (several) {  // several labels per photo: how many of the labels a photo shows it finds, and how often it is right
    $("estimate-big").replaceChildren(el("span", { class: "num" }, pct(several.recall)), " of the things a new photo shows found",
      el("span", { class: "muted" }, `; ${pct(several.precision)} of the labels it names are right`));
    $("estimate-how").textContent = `Measured by ${several.method}. All of a photo's labels exactly right: ${pct(several.exact_set)} of photos.`;
  } else {
    $("estimate-big").replaceChildren(
      el("span", { class: "num" }, pct(est.accuracy)), state.verifier ? ` of new photos of ${only} recognised` : " of new photos answered right",
      el("span", { class: "muted" }, ` (between ${pct(est.low)} and ${pct(est.high)}, 95 % sure)`));
    $("estimate-how").textContent = `Measured by ${est.method || "held-out photos"}.`;
  }
  $("copies-line").hidden = r.pictures >= 0.8 * r.photos;
  $("copies-line").textContent = `Your ${r.photos} photos show about ${r.pictures} different picture${r.pictures === 1 ? "" : "s"}; ` +
    "the rest are near copies (a camera held still makes them), so this figure may be too kind. Add photos from other " +
    "days, places and light.";
  const u = r.unknown;
  const accepts = u ? pct(u.expected_acceptance ?? u.target_acceptance) : "";
  $("unknown-line").textContent = !u ? "" : state.verifier ?
    `It says ${only} for about ${accepts} of photos like yours, and “Not ${only}” for the rest — and for anyone or anything else.` :
    `“Unknown”: it answers for about ${accepts} of photos like yours and says “unknown” for the rest — and for things unlike anything it was taught.`;
  const advice = r.advice?.sentence || "";
  $("more-line").hidden = !advice;
  $("more-line").textContent = advice ? `More photos? ${advice[0].toUpperCase()}${advice.slice(1)}.` : "";
  $("per-label-panels").hidden = state.verifier;
  $("confused-panel").hidden = !!several;
  $("per-label-panels").classList.toggle("single", !!several);  // each label is decided on its own: nothing is mixed up with another
  $("per-label-title").textContent = several ? "Photos of each label found" : "Right answers per label";
  $("per-label-how").textContent = several ?
    "Of the photos with each label, how many it gave that label — and how often that label was right when it gave it." :
    "Each photo answered by a model that did not see it while learning.";
  $("per-label").replaceChildren(...r.per_label.map((p) => bar(p.label, p.accuracy, several ?
    `${pct(p.accuracy)} of ${p.n}, right ${pct(p.precision)}` : `${pct(p.accuracy)} of ${p.n}`)));
  $("confused").replaceChildren(...(r.confused.length ? r.confused.map((c) => el("div", { class: "pair" },
    el("p", {}, el("b", {}, c.labels[0]), " and ", el("b", {}, c.labels[1]), el("span", { class: "muted" }, ` — ${c.mistakes} mix-up${c.mistakes === 1 ? "" : "s"}`)),
    el("div", { class: "thumbs" }, c.photos.map((p) => el("figure", {},
      el("img", { src: thumb(p.path, 96), alt: p.path }), el("figcaption", { class: "small" }, `${p.label} → ${p.answered}`)))))) :
    [el("p", { class: "muted" }, "No label was mistaken for another.")]));
  $("findings-count").textContent = r.findings.length ? `(${r.findings.length})` : "";
  showFindings(r.findings, FINDINGS_SHOWN);
}

const FINDINGS_SHOWN = 9;  // worst kinds first; the rest behind "Show all"
function showFindings(findings, n) {
  const cards = findings.slice(0, n).map(findingCard);
  if (findings.length > n) {
    cards.push(el("p", { class: "more" }, el("button", { type: "button", class: "btn small", onclick: () => showFindings(findings, findings.length) },
      `Show all ${findings.length}`)));
  }
  $("findings").replaceChildren(...(findings.length ? cards : [el("p", { class: "muted" }, "Nothing to look at.")]));
}

function bar(label, value, text) {
  return el("li", {}, el("span", { class: "bar-label" }, label),
    el("span", { class: "bar-track" }, el("span", { class: "bar-fill", style: { width: `${Math.round(value * 100)}%` } })),
    el("span", { class: "bar-value" }, text));
}

const KIND_WORDS = { label_error: "Maybe in the wrong label", missing_label: "Maybe also shows", extra_label: "Maybe does not show",
  outlier: "Unlike the rest of its label", exact_duplicate: "An exact copy",
  near_duplicate: "Nearly a copy", blurry: "Blurry", too_small: "Very small", near_uniform: "Almost blank" };
function findingCard(f) {
  const actions = [];
  if (f.kind === "missing_label") actions.push(el("button", { type: "button", class: "btn small primary", onclick: () => act(() => api("/api/photos/copy", { method: "POST", json: { paths: [f.path], label: f.label } }), `Added to ${f.label} too.`) }, `Add to ${f.label} too`));
  if (f.suggested) actions.push(el("button", { type: "button", class: "btn small primary", onclick: () => act(() => api("/api/photos/move", { method: "POST", json: { paths: [f.path], label: f.suggested } }), `Moved to ${f.suggested}.`) }, `Move to ${f.suggested}`));
  const removes = f.kind === "extra_label" ? `Take out of ${f.label}` : "Remove from training";
  actions.push(el("button", { type: "button", class: "btn small", onclick: () => act(() => api("/api/photos/remove", { method: "POST", json: { paths: [f.path] } }), f.kind === "extra_label" ? `Taken out of ${f.label} (it is in the trash).` : "Removed from training (it is in the trash).") }, removes));
  actions.push(el("button", { type: "button", class: "btn small", onclick: () => act(() => api("/api/findings/keep", { method: "POST", json: { path: f.path, kind: f.kind } }), "Kept as it is.") }, "Keep as it is"));
  return el("article", { class: "finding" },
    el("img", { src: thumb(f.path, 160), alt: f.path }),
    el("div", {}, el("p", {}, el("b", {}, KIND_WORDS[f.kind] || f.kind),
      f.label ? (f.kind === "missing_label" || f.kind === "extra_label" ? ` ${f.label}` : ` in ${f.label}`) : ""),
      el("p", { class: "muted small" }, f.reason),
      f.other ? el("p", { class: "small" }, "Like ", el("code", {}, f.other)) : null,
      el("div", { class: "card-actions" }, actions)));
}
async function act(fn, done) {
  if (await attempt(fn)) { notice(`${done} Undo takes it back.`); await changed(); loadResults(); }
}

// ---- try it: live answers and corrections --------------------------------------------------------------------------
function fillCorrect() {
  const sel = $("correct-label");
  sel.replaceChildren(...state.labels.map((l) => el("option", {}, l.name)));
}
async function answer(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const where = $("show-where").checked;
  const sets = state.sets ? `&error_rate=${ERROR_RATE}` : "";
  const r = await api(`/api/predict?top_k=${Math.max(1, state.labels.length)}&neighbors=${state.live ? 0 : 4}&explain=${where}${sets}`,
    { method: "POST", form });
  state.lastAnswer = { blob, name, result: r };
  showAnswer(r);
  return r;
}
const ERROR_RATE = 0.05;  // label sets right 95 times in 100
const likeness = (x) => (x == null ? "–" : x.toFixed(2));
function showAnswer(r) {
  const unknown = r.status === "unknown" || r.label === "unknown";
  const only = state.labels[0]?.name;
  const named = r.labels ? r.labels.map((a) => a.label) : null;  // several labels per photo
  $("answer").textContent = unknown ? (state.verifier ? `Not ${only}` : "I don't know this") :
    r.status === "none" ? "None of these" : named ? named.join(" + ") : r.label;
  $("answer").dataset.unknown = unknown;
  if (state.verifier) {  // one label: how alike it is says it all (a probability over one label is always 100 %)
    $("answer-set").hidden = true;
    $("answer-note").textContent = `Likeness to your photos ${likeness(r.similarity)}; it says ${only} from ${likeness(state.threshold)} up.`;
    $("answer-bars").replaceChildren(bar("likeness", Math.max(0, r.similarity || 0), likeness(r.similarity)));
  } else {
    $("answer-note").textContent = unknown ? "It is unlike the photos of every label — nothing it was taught." :
      r.status === "none" ? "No label reached the mark it needs." :
      named && named.length > 1 ? named.map((lab, i) => `${lab} ${pct(r.labels[i].confidence)}`).join(", ") : `${pct(r.confidence)} sure`;
    const unsure = !unknown && (r.set || []).length > 1;  // the labels that together are right 95 times in 100
    $("answer-set").hidden = !unsure;
    $("answer-set").textContent = unsure ? `Can't tell for sure: ${r.set.join(" or ")}.` : "";
    $("answer-set").title = `the right label is among these for ${Math.round(100 * (1 - ERROR_RATE))} of 100 new photos of your labels`;
    const byLabel = new Map((r.top_k || []).map((t) => [t.label, t.confidence]));
    $("answer-bars").replaceChildren(...state.labels.map((l) => {
      const b = bar(l.name, byLabel.get(l.name) || 0, pct(byLabel.get(l.name) || 0));
      const mark = state.thresholds?.[l.name];
      if (mark != null) {  // each label is named from its own mark on
        b.querySelector(".bar-track").append(el("span", { class: "bar-mark", style: { left: `${(100 * mark).toFixed(1)}%` } }));
        b.title = `${l.name} is named from ${pct(mark)} on`;
        if (named?.includes(l.name)) b.classList.add("named");
      }
      return b;
    }));
  }
  const heat = r.explanation?.heatmap;
  $("try-heat").hidden = !heat;
  $("try-heat").classList.toggle("mirror", state.live);  // over the mirrored preview, mirrored alike
  if (heat) $("try-heat").src = heat;
  $("correct").hidden = false;
  $("correct-what").textContent = state.live ? "frame" : "photo";
  const near = r.neighbors || [];
  $("nearest-box").hidden = !near.length;
  $("nearest").replaceChildren(...near.map((n) => el("figure", {}, el("img", { src: thumb(n.path, 96), alt: n.path }),
    el("figcaption", { class: "small" }, n.label.split(";").join(" + ")))));
}
async function tryFile(file) {
  stopLive();
  $("try-photo").src = URL.createObjectURL(file);
  $("try-photo").hidden = false; $("try-hint").hidden = true;
  await attempt(() => answer(file, file.name));
}
$("try-pick").addEventListener("click", () => $("try-file").click());
$("try-file").addEventListener("change", (e) => { if (e.target.files[0]) tryFile(e.target.files[0]); e.target.value = ""; });
$("try-drop").addEventListener("dragover", (e) => e.preventDefault());
$("try-drop").addEventListener("drop", (e) => { e.preventDefault(); if (e.dataTransfer.files[0]) tryFile(e.dataTransfer.files[0]); });
$("show-where").addEventListener("change", () => {
  if (!$("show-where").checked) $("try-heat").hidden = true;
  if (!state.live && state.lastAnswer) attempt(() => answer(state.lastAnswer.blob, state.lastAnswer.name));
});

async function liveLoop() {
  const video = $("live-video");
  let took = [], since = performance.now();
  while (state.live) {
    if (video.readyState < 2) { await new Promise((ok) => setTimeout(ok, 50)); continue; }
    const grabbed = performance.now();
    const blob = await grab(video, 320);
    try { await answer(blob, "camera.jpg"); } catch (e) { notice(e.message, "error"); stopLive(); break; }
    const now = performance.now();
    took.push(now - grabbed);
    if (now - since > 1000) {  // frame grabbed to answer shown, the median of the last second
      const median = took.sort((a, b) => a - b)[Math.floor(took.length / 2)];
      $("live-rate").textContent = `${(took.length * 1000 / (now - since)).toFixed(1)} answers a second, ` +
        `${Math.round(median)} ms from frame to answer`;
      took = []; since = now;
    }
  }
}
function stopLive() {
  if (!state.live) return;
  state.live = false;
  $("live-video").hidden = true;
  $("live-toggle").textContent = "Start camera";
  $("live-rate").textContent = "";
  stopCamera();
}
$("live-toggle").addEventListener("click", () => attempt(async () => {
  if (state.live) return stopLive();
  if (!state.model) throw new Error("No model yet: press Train first.");
  const stream = await openCamera();
  const video = $("live-video");
  video.srcObject = stream; video.hidden = false;
  $("try-photo").hidden = true; $("try-heat").hidden = true; $("try-hint").hidden = true;
  $("live-toggle").textContent = "Stop camera";
  state.live = true;
  liveLoop();
}));
$("correct").addEventListener("submit", (e) => {
  e.preventDefault();
  const last = state.lastAnswer;
  if (!last) return;
  const label = $("correct-label").value;
  const ext = last.blob.type === "image/png" ? ".png" : ".jpg";
  addFiles(label, [new File([last.blob], `correction${ext}`, { type: last.blob.type || "image/jpeg" })], "a correction");
});

// ---- export ---------------------------------------------------------------------------------------------------------
async function loadExport() {
  const r = await attempt(() => api("/api/export"));
  if (!r) return;
  $("no-export").hidden = r.model; $("export").hidden = !r.model;
  $("command").textContent = r.command;
  for (const b of document.querySelectorAll("[data-format]")) {
    const ok = r.formats[b.dataset.format];
    b.disabled = !ok;
    b.title = ok ? "" : b.dataset.format === "onnx" ? "Face models are served, not exported" : "Needs the tflite extra: pip install 'imgclf[tflite]'";
  }
}
document.querySelectorAll("[data-format]").forEach((b) => b.addEventListener("click", () => attempt(async () => {
  b.disabled = true;
  const item = el("li", {}, `Exporting ${b.textContent} and checking it…`);
  $("exports").prepend(item);
  try {
    const r = await api(`/api/export/${b.dataset.format}`, { method: "POST" });
    const p = r.parity;
    item.replaceChildren(el("a", { href: r.download, download: true }, `${b.textContent} (${(r.size / 1e6).toFixed(1)} MB)`),
      ` — same best label on ${pct(p.top1_agreement)} of ${p.photos} held-out photos, probabilities within ${p.max_probability_diff.toExponential(1)}`);
  } catch (e) { item.textContent = `${b.textContent}: ${e.message}`; } finally { b.disabled = false; }
})));
$("copy-command").addEventListener("click", () => navigator.clipboard?.writeText($("command").textContent).then(() => notice("Copied.")));

start().catch((e) => notice(e.message, "error"));
