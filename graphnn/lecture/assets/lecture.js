// graphnn lecture page: shows, hides and highlights what Python computed (the lesson JSON).
// It computes no number: every value, label and path comes from graphnn's evaluator,
// autodiff record and derivations, embedded in the page.
(function () {
  "use strict";
  const L = JSON.parse(document.getElementById("lesson").textContent);
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const state = {step: 0, weight: null, frame: 0, playing: null, quiz: !!L.quiz};
  window.__lecture = state;            // for tests and for the curious: where the page is

  // -- the pictures: numbers by "owner|line", groups by owner ---------------------------------
  function indexPicture(root) {
    const nums = {}, groups = {};
    for (const g of $$("[data-owner]", root)) {
      groups[g.dataset.owner] = g;
      for (const el of $$(".num", g)) {
        const line = (el.closest("[data-line]") || el).dataset.line;
        const key = g.dataset.owner + "|" + line;
        (nums[key] = nums[key] || []).push(el);
        if (el.dataset.orig === undefined) el.dataset.orig = el.textContent;
      }
    }
    return {nums, groups};
  }
  const pics = {};
  for (const div of $$(".stage .pic")) {
    pics[div.dataset.picture] = Object.assign({div}, indexPicture(div));
    // numbers shown from the start are the givens (inputs, weights): a quiz leaves them
    for (const [key, els] of Object.entries(pics[div.dataset.picture].nums))
      if (L.reveal[key] === undefined) els.forEach(el => el.classList.add("given"));
  }

  function pictureOf(i) {
    if (state.weight && L.weights[state.weight].picture) return L.weights[state.weight].picture;
    return L.steps[i].picture || L.picture;
  }

  // The numbers step i puts in place of the drawn ones: the update's, a training frame's.
  function relabelOf(i) {
    if (L.steps[i].phase === "train" && L.training) return L.training.frames[state.frame].relabel;
    return L.relabel[i] || {};
  }

  // Apply step i's state (revealed numbers, relabels, highlights) to one indexed picture;
  // i = null: every number as drawn (beside a weight's derivation, which uses them all).
  function applyPicture(p, i, highlight) {
    for (const [key, els] of Object.entries(p.nums)) {
      const at = L.reveal[key];
      const hidden = i !== null && at !== undefined && at > i;
      for (const el of els) {
        el.classList.toggle("hide", hidden);
        el.classList.toggle("fresh", at === i);
        el.textContent = el.dataset.orig;
        el.classList.remove("changed");
      }
    }
    for (const [key, texts] of Object.entries(i === null ? {} : relabelOf(i))) {
      const els = p.nums[key] || [];
      const spans = els.filter(e => e.tagName.toLowerCase() === "tspan");
      spans.forEach((el, n) => { if (n < texts.length) { el.textContent = texts[n]; el.classList.add("changed"); } });
      els.filter(e => e.tagName.toLowerCase() !== "tspan").forEach(el => { el.textContent = ""; });
    }
    for (const g of Object.values(p.groups)) g.classList.remove("focus", "flow", "path", "explicit", "implicit", "dim", "lit");
    if (!highlight) return;
    const s = L.steps[i];
    const mark = (owners, cls) => (owners || []).forEach(o => p.groups[o] && p.groups[o].classList.add(cls));
    mark(s.focus, "focus");
    mark(s.flow, "flow");
    mark(s.explicit, "explicit");
    mark(s.implicit, "implicit");
  }

  function highlightWeight(p, name, only) {
    const w = L.weights[name];
    if (!w) return;
    const paths = only === undefined ? w.paths : [w.paths[only]];
    for (const g of Object.values(p.groups)) g.classList.remove("focus", "flow", "explicit", "implicit", "path");
    paths.forEach((path, n) => {
      for (const o of path) {
        const g = p.groups[o];
        if (!g) continue;
        g.classList.add("path");
        if (w.kinds && o.endsWith("->w")) g.classList.add("explicit");
        else if (w.kinds && /^s\d+->s\d+$/.test(o)) g.classList.add("implicit");
      }
    });
    for (const o of w.owners) p.groups[o] && p.groups[o].classList.add("lit");
  }

  // The picture takes the height its shape needs at the stage's width (at most 62% of the
  // screen, 45% beside the training curve); the panel takes the rest.
  function fit() {
    const app = $(".app"), pic = $(".stage .pic:not([hidden]) svg");
    if (!pic || !pic.viewBox.baseVal || !pic.viewBox.baseVal.width) return;
    const box = pic.viewBox.baseVal, stage = $(".stage");
    const width = stage.clientWidth - 16;
    const cap = L.steps[state.step].phase === "train" && !state.weight ? 0.45 : 0.62;   // the curve needs room
    const height = Math.min(cap * app.clientHeight, Math.max(0.3 * app.clientHeight, width * box.height / box.width + 12));
    app.style.gridTemplateRows = `${Math.round(height)}px minmax(0, 1fr)`;
  }
  window.addEventListener("resize", fit);

  // -- rendering one step ----------------------------------------------------------------------
  function render() {
    const i = state.step, s = L.steps[i], name = pictureOf(i);
    for (const [n, p] of Object.entries(pics)) {
      p.div.hidden = n !== name;
      applyPicture(p, state.weight ? null : i, !state.weight);
    }
    if (state.weight) highlightWeight(pics[name], state.weight);
    const panel = $(".panel");
    if (panel.dataset.step !== String(i)) {
      panel.innerHTML = s.html;
      panel.dataset.step = String(i);
      panel.scrollTop = 0;
      if (s.phase === "train") bindTraining(panel);
    }
    if (s.phase === "train") showFrame(panel);
    $(".counter").textContent = `${i + 1} / ${L.steps.length}`;
    for (const b of $$(".phases button")) {
      const first = L.steps.findIndex(x => x.phase === b.dataset.phase);
      b.disabled = first < 0;
      b.classList.toggle("active", s.phase === b.dataset.phase);
    }
    document.body.classList.toggle("quiz", state.quiz);
    $(".quiz").classList.toggle("active", state.quiz);
    document.body.dataset.phase = s.phase;
    fit();
  }

  function go(i) {
    state.step = Math.max(0, Math.min(L.steps.length - 1, i));
    if (L.steps[state.step].phase !== "train") stop();
    render();
  }

  // -- a clicked weight: its derivation beside the picture, its paths on it -----------------------
  function openWeight(name) {
    const w = L.weights[name];
    if (!w) return;
    state.weight = name;
    $(".wtitle").innerHTML = w.title;
    const body = $(".wbody");
    body.innerHTML = w.html;
    body.scrollTop = 0;
    $(".weight").hidden = false;
    document.body.classList.add("weight-open");
    for (const c of $$(".chip")) c.classList.toggle("active", c.dataset.weight === name);
    render();
  }

  function closeWeight() {
    state.weight = null;
    $(".weight").hidden = true;
    document.body.classList.remove("weight-open");
    for (const c of $$(".chip")) c.classList.remove("active");
    render();
  }

  $(".wbody").addEventListener("mouseover", e => {
    const d = e.target.closest(".dstep[data-path]");
    if (!state.weight) return;
    const p = pics[pictureOf(state.step)];
    if (d) {
      highlightWeight(p, state.weight, Number(d.dataset.path));
      for (const x of $$(".dstep[data-path]", $(".wbody"))) x.classList.toggle("current", x === d);
    }
  });
  $(".wbody").addEventListener("mouseleave", () => state.weight && render());

  document.addEventListener("click", e => {
    const chip = e.target.closest(".chip");
    if (chip) return openWeight(chip.dataset.weight);
    if (state.quiz) {
      const num = e.target.closest(".num");
      if (num) return num.classList.toggle("shown");
    }
    const g = e.target.closest(".stage [data-owner]");
    if (g) {
      const pic = pictureOf(state.step);
      const hit = Object.entries(L.weights).find(([, w]) => w.owners.includes(g.dataset.owner)
                                                 && (!w.picture || w.picture === pic));
      if (hit) return openWeight(hit[0]);
    }
  });
  $(".close").addEventListener("click", closeWeight);
  $(".prev").addEventListener("click", () => go(state.step - 1));
  $(".next").addEventListener("click", () => go(state.step + 1));
  $(".quiz").addEventListener("click", () => { state.quiz = !state.quiz; render(); });
  $(".print").addEventListener("click", () => window.print());
  for (const b of $$(".phases button"))
    b.addEventListener("click", () => go(L.steps.findIndex(x => x.phase === b.dataset.phase)));

  document.addEventListener("keydown", e => {
    if (e.target.closest && e.target.closest("input")) return;
    const k = e.key;
    if (k === "ArrowRight" || k === " " || k === "PageDown" || k === "Enter") go(state.step + 1);
    else if (k === "ArrowLeft" || k === "PageUp" || k === "Backspace") go(state.step - 1);
    else if (k === "Home") go(0);
    else if (k === "End") go(L.steps.length - 1);
    else if (k === "q" || k === "Q") { state.quiz = !state.quiz; render(); }
    else if (k === "p" || k === "P") { if (L.training) { go(L.steps.length - 1); toggle(); } }
    else if (k === "Escape") closeWeight();
    else return;
    e.preventDefault();
  });

  // -- training: precomputed frames, played back ------------------------------------------------
  function bindTraining(panel) {
    const slider = $(".frame", panel);
    if (slider) slider.addEventListener("input", () => { state.frame = Number(slider.value); render(); });
    const play = $(".play", panel);
    if (play) play.addEventListener("click", toggle);
  }

  function showFrame(panel) {
    const T = L.training, f = T.frames[state.frame];
    const marker = $(".marker", panel);
    if (marker) { marker.setAttribute("cx", f.x); marker.setAttribute("cy", f.y); }
    const img = $("img.outcome", panel);
    if (img && f.image !== null) img.src = T.images[f.image];
    const set = (sel, text) => { const el = $(sel, panel); if (el) el.textContent = text; };
    set(".fstep", String(f.step));
    set(".floss", f.loss);
    const slider = $(".frame", panel);
    if (slider) slider.value = String(state.frame);
    const play = $(".play", panel);
    if (play) play.textContent = state.playing ? "❚❚ pause" : "▶ play";
  }

  function stop() {
    if (state.playing) clearInterval(state.playing);
    state.playing = null;
  }

  function toggle() {
    if (state.playing) { stop(); render(); return; }
    if (state.frame >= L.training.frames.length - 1) state.frame = 0;
    state.playing = setInterval(() => {
      if (state.frame >= L.training.frames.length - 1) { stop(); render(); return; }
      state.frame += 1;
      render();
    }, 700);
    render();
  }

  // -- printing: every step on a page of its own, the picture as it stands at that step ------------
  function buildPrint() {
    const out = $(".printout");
    out.innerHTML = "";
    L.steps.forEach((s, i) => {
      const page = document.createElement("section");
      page.className = "ppage";
      const src = pics[s.picture || L.picture];
      const clone = src.div.cloneNode(true);
      clone.hidden = false;
      page.appendChild(clone);
      const p = indexPicture(clone);
      for (const [key, els] of Object.entries(p.nums)) els.forEach(el => { el.textContent = el.dataset.orig; });
      applyPicture(p, i, true);
      const body = document.createElement("div");
      body.className = "panel";
      body.innerHTML = `<div class="pnum">step ${i + 1} of ${L.steps.length}</div>` + s.html;
      page.appendChild(body);
      out.appendChild(page);
    });
    return out.children.length;
  }
  state.buildPrint = buildPrint;
  window.addEventListener("beforeprint", buildPrint);

  render();
})();
