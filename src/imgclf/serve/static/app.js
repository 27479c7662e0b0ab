// imgclf web page: drop, paste, pick or shoot photos; each is sent to POST /predict.
// Plain JavaScript, no build step, no external assets.
(function () {
  "use strict";

  var UNKNOWN = "unknown";
  var PARALLEL = 4; // requests in flight from this page; the server batches them

  var $ = function (id) { return document.getElementById(id); };
  var drop = $("drop"), fileInput = $("file"), captureInput = $("capture");
  var results = $("results"), template = $("card-template");
  var queue = [], running = 0, total = 0;
  var stream = null;
  var NEIGHBORS = 3; // training photos shown per answer, when the model keeps their index
  var ERROR_RATE = 0.05; // label sets that hold the right label 95 times in 100, when the model has them
  var can = { explain: false, neighbors: false, sets: false }; // what this model answers besides labels (GET /model)
  var threshold = null; // similarity below which the model answers "unknown"
  var labelThresholds = null; // several labels per photo: {label: the probability it needs to be answered}

  function pct(x) {
    var v = 100 * x;
    if (v < 0.05) return "<0.1%";
    return (v >= 99.95 ? "100" : v.toFixed(1)) + "%";
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // --- the model ---------------------------------------------------------------------
  function showModel(m) {
    can.explain = !!m.explain;
    can.neighbors = !!m.neighbors;
    can.sets = !!m.label_sets;
    var box = $("model");
    box.textContent = "";
    var line = el("div", "model-line");
    line.appendChild(el("strong", "model-name", m.name));
    var est = m.metrics && m.metrics.estimate, several = m.metrics && m.metrics.multi_label;
    if (m.multi_label) {
      labelThresholds = {};
      (m.labels || []).forEach(function (lab, i) { labelThresholds[lab] = m.multi_label.thresholds[i]; });
    }
    if (several && typeof several.precision === "number") {
      var acc2 = el("span", "acc", "finds " + Math.round(100 * several.recall) + " in 100 of the labels a photo shows; " +
        Math.round(100 * several.precision) + " in 100 of the labels it names are right");
      acc2.title = "mean over labels of recall and precision on photos it was not trained on (" + several.method + ")";
      line.appendChild(acc2);
    } else if (est && typeof est.accuracy === "number") {
      var acc = el("span", "acc", "right about " + Math.round(100 * est.accuracy) + " times in 100 on new photos");
      acc.title = "estimated accuracy " + pct(est.accuracy) + ", 95 % interval " + pct(est.low) + "–" + pct(est.high) +
        " (" + est.method + ")";
      line.appendChild(acc);
    } else {
      line.appendChild(el("span", "acc muted", "accuracy not measured"));
    }
    if (m.backbone && m.backbone.name) line.appendChild(el("span", "muted", m.backbone.name));
    box.appendChild(line);
    var chips = el("ul", "chips");
    chips.setAttribute("aria-label", "labels this model knows");
    (m.labels || []).forEach(function (lab) { chips.appendChild(el("li", "chip", lab)); });
    if (m.threshold !== null && m.threshold !== undefined) {
      threshold = Number(m.threshold);
      var chip = el("li", "chip chip-unknown", UNKNOWN + ": unlike every training photo");
      chip.title = "a photo whose similarity to the training photos is below " + threshold.toFixed(2) +
        " is answered unknown";
      chips.appendChild(chip);
    }
    box.appendChild(chips);
    var sel = $("topk"), n = (m.labels || []).length;
    Array.prototype.slice.call(sel.options).forEach(function (o) { o.hidden = Number(o.value) > n; });
    if (n && Number(sel.value) > n) sel.value = String(n);
  }

  fetch("/model").then(function (r) { return r.json(); }).then(showModel).catch(function () {
    $("model").textContent = "model information unavailable";
  });

  // --- results -----------------------------------------------------------------------
  function addCard(file) {
    var card = template.content.firstElementChild.cloneNode(true);
    var img = card.querySelector("img");
    var url = URL.createObjectURL(file);
    img.src = url;
    card.dataset.photo = url;
    img.alt = file.name || "photo";
    img.onerror = function () { card.querySelector(".thumb").classList.add("no-preview"); img.remove(); };
    card.querySelector(".name").textContent = file.name || "pasted photo";
    card.querySelector(".name").title = file.name || "";
    card.querySelector(".label").textContent = "classifying…";
    results.insertBefore(card, results.firstChild);
    total += 1;
    $("results-head").hidden = false;
    $("count").textContent = "(" + total + ")";
    return card;
  }

  function render(card, pred) {
    card.classList.remove("pending");
    card.dataset.state = "done";
    var label = pred.label, isUnknown = pred.status === "unknown", isNoFace = pred.status === "no_face";
    var named = pred.labels ? pred.labels.map(function (a) { return a.label; }) : null; // several labels per photo
    if (named && pred.status === "ok") label = named.join(" + ");
    if (pred.status === "none") label = "none of these";
    card.dataset.label = label;
    card.classList.toggle("is-unknown", isUnknown || isNoFace);
    card.querySelector(".label").textContent = label;
    var badge = card.querySelector(".badge");
    badge.hidden = !(isUnknown || isNoFace);
    badge.textContent = isNoFace ? "no face found" : "unlike every training photo";
    var conf = card.querySelector(".conf");
    conf.textContent = isUnknown || pred.confidence === null || (named && named.length > 1) ? "" : pct(pred.confidence) + " sure";
    conf.title = isUnknown || pred.confidence === null ? "" :
      "of 100 answers given this sure, about " + Math.round(100 * pred.confidence) + " are right";
    var why = card.querySelector(".why");
    why.hidden = !isUnknown && pred.status !== "none";
    if (pred.status === "none") {
      var near = (pred.top_k || [])[0];
      why.textContent = "no label reached its mark" + (near && labelThresholds ? " · closest: " + near.label + " " +
        pct(near.confidence) + ", needs " + pct(labelThresholds[near.label]) : "");
    }
    if (isUnknown) {
      why.textContent = "similarity " + pred.similarity.toFixed(2) + (threshold !== null ? ", below " + threshold.toFixed(2) : "") +
        " · closest label: " + ((pred.top_k || [])[0] || {}).label;
    }
    showSet(card, pred.set, isUnknown);
    var bars = card.querySelector(".bars");
    bars.textContent = "";
    bars.hidden = isUnknown; // a best guess's percentage would seem to contradict "unknown"
    (pred.top_k || []).forEach(function (t, i) {
      var answered = named ? named.indexOf(t.label) >= 0 : i === 0;
      var li = el("li", "bar" + (answered ? " top" : "") + (t.label === UNKNOWN ? " unknown" : ""));
      li.dataset.label = t.label;
      var head = el("div", "bar-head");
      head.appendChild(el("span", "bar-label", t.label));
      head.appendChild(el("span", "bar-pct", pct(t.confidence)));
      var track = el("div", "track");
      var fill = el("div", "fill");
      fill.style.width = Math.max(0.5, 100 * t.confidence).toFixed(1) + "%";
      track.appendChild(fill);
      if (labelThresholds && t.label in labelThresholds) { // each label is answered from its own mark on
        var mark = el("span", "mark");
        mark.style.left = (100 * labelThresholds[t.label]).toFixed(1) + "%";
        track.appendChild(mark);
        li.title = t.label + " is answered from " + pct(labelThresholds[t.label]) + " on";
      }
      li.appendChild(head);
      li.appendChild(track);
      bars.appendChild(li);
    });
    showExplanation(card, pred.explanation);
    showNeighbors(card, pred.neighbors);
  }

  // When the best guess is not sure enough: the labels that together are right 95 times in 100.
  function showSet(card, set, isUnknown) {
    var line = card.querySelector(".set");
    line.textContent = "";
    line.hidden = isUnknown || !set || set.length < 2;
    if (line.hidden) return;
    line.appendChild(document.createTextNode("Can't tell for sure: "));
    line.appendChild(el("strong", "", set.join(" or ")));
    line.title = "the right label is among these for " + Math.round(100 * (1 - ERROR_RATE)) +
      " of 100 new photos of the labels it knows";
  }

  // Where the model looked: a toggle between the photo and its heatmap overlay; with several labels, one step
  // per label answered ("where it saw roses", "where it saw tulips", then the photo again).
  function showExplanation(card, e) {
    var button = card.querySelector(".explain-toggle");
    if (!e || !e.heatmap) { button.hidden = true; return; }
    var img = card.querySelector(".thumb img");
    var maps = e.maps && e.maps.length > 1 ? e.maps : [e];
    var step = 0; // 0: the photo; i: the i-th map
    function caption(i) {
      return maps.length > 1 ? "show where it saw " + maps[i - 1].label : "show where it looked";
    }
    button.hidden = false;
    button.setAttribute("aria-pressed", "false");
    button.textContent = caption(1);
    button.onclick = function () {
      step = (step + 1) % (maps.length + 1);
      if (img) img.src = step ? maps[step - 1].heatmap : card.dataset.photo;
      var thumb = card.querySelector(".thumb");
      if (step && maps.length > 1) thumb.dataset.map = maps[step - 1].label; else delete thumb.dataset.map;
      button.setAttribute("aria-pressed", step ? "true" : "false");
      button.textContent = step === maps.length ? "show the photo" : caption(step + 1);
      card.classList.toggle("explained", step > 0);
    };
  }

  // The training photos most like this one, as thumbnails when the server can read them.
  function showNeighbors(card, neighbors) {
    var list = card.querySelector(".neighbors");
    list.textContent = "";
    list.hidden = !(neighbors && neighbors.length);
    (neighbors || []).forEach(function (n) {
      var li = el("li", "neighbor");
      li.title = n.label + " · " + n.path + " · similarity " + n.similarity.toFixed(2);
      li.dataset.label = n.label;
      var img = el("img");
      img.alt = n.label;
      img.loading = "lazy";
      img.src = "/training-photo?path=" + encodeURIComponent(n.path);
      img.onerror = function () { img.remove(); li.classList.add("no-preview"); };
      li.appendChild(img);
      li.appendChild(el("span", "neighbor-label", n.label.split(";").join(" + ")));
      list.appendChild(li);
    });
  }

  function fail(card, message) {
    card.classList.remove("pending");
    card.classList.add("failed");
    card.dataset.state = "error";
    card.querySelector(".label").textContent = "could not classify";
    card.querySelector(".error").textContent = message;
  }

  function classify(file, card) {
    var body = new FormData();
    body.append("file", file, file.name || "photo");
    var topk = $("topk").value;
    var query = "/predict?top_k=" + encodeURIComponent(topk) + (can.explain ? "&explain=true" : "") +
      (can.neighbors ? "&neighbors=" + NEIGHBORS : "") + (can.sets ? "&error_rate=" + ERROR_RATE : "");
    return fetch(query, { method: "POST", body: body })
      .then(function (r) {
        return r.json().catch(function () { return { detail: "HTTP " + r.status }; }).then(function (data) {
          if (!r.ok) {
            var d = data && data.detail;
            throw new Error(typeof d === "string" ? d : (d ? JSON.stringify(d) : "HTTP " + r.status));
          }
          render(card, data);
        });
      })
      .catch(function (e) { fail(card, e && e.message ? e.message : String(e)); });
  }

  function pump() {
    while (running < PARALLEL && queue.length) {
      var job = queue.shift();
      running += 1;
      classify(job.file, job.card).then(function () { running -= 1; pump(); });
    }
  }

  function addFiles(list) {
    Array.prototype.slice.call(list || []).forEach(function (file) {
      queue.push({ file: file, card: addCard(file) });
    });
    pump();
  }

  // Exposed for scripting and tests: imgclf.render(card, prediction), imgclf.addFiles(files)
  window.imgclf = { render: render, addFiles: addFiles };

  // --- inputs: pick, drop, paste, camera ------------------------------------------------
  $("pick").addEventListener("click", function () { fileInput.click(); });
  fileInput.addEventListener("change", function () { addFiles(fileInput.files); fileInput.value = ""; });
  captureInput.addEventListener("change", function () { addFiles(captureInput.files); captureInput.value = ""; });
  drop.addEventListener("keydown", function (e) {
    if (e.target === drop && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); fileInput.click(); }
  });

  ["dragenter", "dragover"].forEach(function (type) {
    document.addEventListener(type, function (e) {
      e.preventDefault();
      drop.classList.add("over");
    });
  });
  ["dragleave", "dragend"].forEach(function (type) {
    document.addEventListener(type, function (e) {
      if (e.type === "dragend" || !e.relatedTarget) drop.classList.remove("over");
    });
  });
  document.addEventListener("drop", function (e) {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
  });

  document.addEventListener("paste", function (e) {
    var items = (e.clipboardData && e.clipboardData.items) || [];
    var files = [];
    for (var i = 0; i < items.length; i++) {
      if (items[i].kind === "file") {
        var f = items[i].getAsFile();
        if (f) files.push(f);
      }
    }
    if (files.length) { e.preventDefault(); addFiles(files); }
  });

  var canStream = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.isSecureContext);
  var coarse = window.matchMedia && window.matchMedia("(pointer: coarse)").matches;
  var camBtn = $("camera");
  camBtn.hidden = !(canStream || coarse);

  function closeCamera() {
    if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
    stream = null;
    $("camera-panel").hidden = true;
  }

  camBtn.addEventListener("click", function () {
    if (coarse || !canStream) { captureInput.click(); return; } // phones: the native camera UI
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false })
      .then(function (s) {
        stream = s;
        $("video").srcObject = s;
        $("camera-panel").hidden = false;
      })
      .catch(function () { captureInput.click(); });
  });
  $("camera-close").addEventListener("click", closeCamera);
  $("snap").addEventListener("click", function () {
    var video = $("video");
    if (!video.videoWidth) return;
    var canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob(function (blob) {
      if (!blob) return;
      var stamp = new Date().toISOString().replace(/[:.]/g, "-");
      addFiles([new File([blob], "camera-" + stamp + ".jpg", { type: "image/jpeg" })]);
    }, "image/jpeg", 0.92);
  });

  $("clear").addEventListener("click", function () {
    Array.prototype.slice.call(results.querySelectorAll("img")).forEach(function (img) {
      if (img.src.indexOf("blob:") === 0) URL.revokeObjectURL(img.src);
    });
    results.textContent = "";
    total = 0;
    $("results-head").hidden = true;
  });
})();
