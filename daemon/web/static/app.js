// ChestAid's page scripts: worklist refresh, heatmap opacity, image analysis, the
// confirmation before dismissing an urgent study, and keyboard shortcuts.
"use strict";

function setupViewers(root) {
  root.querySelectorAll("[data-viewer]").forEach((viewer) => {
    const layer = viewer.querySelector("img.heatmap");
    const slider = viewer.querySelector("[data-alpha-slider]");
    const shown = viewer.querySelector("[data-alpha-value]");
    if (!layer || !slider) return;
    const apply = () => {
      layer.style.opacity = slider.value;
      if (shown) shown.textContent = Number(slider.value).toFixed(2);
    };
    slider.addEventListener("input", apply);
    apply();
  });
}

function setupWorklist() {
  const table = document.getElementById("worklist");
  if (!table) return;
  const body = document.getElementById("worklist-rows");
  const stamp = document.getElementById("worklist-updated");
  const seconds = Number(table.dataset.refreshSeconds || 15);
  const refresh = async () => {
    try {
      // Marked as a refresh: it does not keep an unattended session from idling out.
      const response = await fetch(table.dataset.refreshUrl, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-ChestAid-Refresh": "1" },
      });
      if (response.redirected || response.status === 401) { window.location.reload(); return; }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      body.innerHTML = await response.text();
      stamp.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      stamp.textContent = `Could not refresh (${err.message}); retrying.`;
    }
  };
  window.setInterval(refresh, seconds * 1000);
  table.addEventListener("chestaid:refresh", refresh);
}

// The threshold slider's own position (scores and the governed threshold come from the
// server, printed by chestaid.display): more digits near 0 and 1.
function percent(p) {
  const x = p * 100;
  if (x <= 0 || x >= 100) return `${Math.min(Math.max(x, 0), 100).toFixed(0)} %`;
  if (x >= 0.1 && x <= 99.9) return `${x.toFixed(1)} %`;
  let digits = 3;
  while (digits < 8 && (x.toFixed(digits) === `100.${"0".repeat(digits)}` || x.toFixed(digits) === `0.${"0".repeat(digits)}`)) digits += 1;
  return `${x.toFixed(digits)} %`;
}

function setupAnalyse() {
  const form = document.getElementById("analyse-form");
  if (!form) return;
  const error = document.getElementById("analyse-error");
  const result = document.getElementById("analyse-result");
  const slider = document.getElementById("threshold-slider");
  const sliderValue = document.getElementById("threshold-value");
  const call = document.getElementById("threshold-call");
  let score = null;
  let governed = null;
  const showCall = () => {
    if (score === null) return;
    const t = Number(slider.value);
    // At the governed threshold, the server's text (printed apart from the score).
    sliderValue.textContent = governed && t === governed.value ? governed.text : percent(t);
    const flagged = score >= t;
    call.textContent = flagged ? "At this threshold: flagged for priority reading" : "At this threshold: below the threshold";
    call.className = `call ${flagged ? "flagged" : "below"}`;
  };
  // A new upload first takes the previous result off the page: a refused upload must
  // never leave an earlier image's score on screen as if it were this one's.
  const clearResult = () => {
    result.hidden = true;
    score = null;
    governed = null;
    for (const img of result.querySelectorAll("img")) img.removeAttribute("src");
    for (const id of ["result-file", "result-score", "result-governed", "result-model", "result-kept", "threshold-value", "threshold-call"]) {
      document.getElementById(id).textContent = "";
    }
    delete document.getElementById("result-score").dataset.score;
  };
  const answerOf = async (response) => {
    try {
      return await response.json();
    } catch {
      return {};  // not JSON (a proxy's error page): the status says enough
    }
  };
  slider.addEventListener("input", showCall);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    error.textContent = "";
    clearResult();
    const file = document.getElementById("analyse-file").files[0];
    if (!file) return;
    const keep = document.getElementById("analyse-keep").checked;
    const button = document.getElementById("analyse-submit");
    button.disabled = true;
    button.textContent = "Analysing…";
    try {
      const url = `/api/v1/analyses?filename=${encodeURIComponent(file.name)}&keep=${keep}`;
      const response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/octet-stream", "X-CSRF-Token": form.dataset.csrf },
        body: file,
      });
      const data = await answerOf(response);
      if (!response.ok) {
        const detail = typeof data.detail === "string" ? data.detail : "";
        throw new Error(detail || `The image was refused (HTTP ${response.status}).`);
      }
      score = data.score;
      governed = { value: data.threshold, text: data.threshold_text };
      result.querySelector("img.source").src = `data:image/png;base64,${data.image_png}`;
      result.querySelector("img.heatmap").src = `data:image/png;base64,${data.heatmap_png}`;
      document.getElementById("result-file").textContent = `${data.filename} (${data.source_format})`;
      const scoreCell = document.getElementById("result-score");
      scoreCell.textContent = data.score_text;
      scoreCell.dataset.score = String(data.score);
      document.getElementById("result-governed").textContent = data.threshold_text;
      document.getElementById("result-model").textContent = `${data.model_version}, calibration v${data.calibration_version}`;
      document.getElementById("result-kept").textContent = data.saved_id ? `Kept as analysis ${data.saved_id}.` : "Not stored.";
      slider.value = String(data.threshold);
      showCall();
      result.hidden = false;
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
      button.textContent = "Analyse";
    }
  });
}

// A form with data-confirm asks first; when confirmed it says so to the server, which
// refuses an urgent study's dismissal without it (a page without this script is asked
// again by the server).
function setupConfirmations() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      const field = form.querySelector("input[name=confirm_urgent]");
      if (field) field.value = "yes";
    });
  });
}

function typing(event) {
  const target = event.target;
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

// Worklist: j/k move the selection, Enter opens it, n opens the first study. The
// selection is kept by study UID across the periodic refresh.
function setupWorklistKeys() {
  const body = document.getElementById("worklist-rows");
  if (!body) return;
  let selected = null;
  const rows = () => [...body.querySelectorAll("tr.row")];
  const show = () => {
    rows().forEach((row) => {
      const on = row.dataset.study === selected;
      row.classList.toggle("selected", on);
      if (on) row.setAttribute("aria-selected", "true"); else row.removeAttribute("aria-selected");
    });
  };
  const move = (step) => {
    const all = rows();
    if (all.length === 0) return;
    const at = all.findIndex((row) => row.dataset.study === selected);
    const next = at < 0 ? 0 : Math.min(Math.max(at + step, 0), all.length - 1);
    selected = all[next].dataset.study;
    show();
    all[next].scrollIntoView({ block: "nearest" });
  };
  const open = (row) => {
    const link = row && row.querySelector("a.open-study");
    if (link) window.location.assign(link.href);
  };
  new MutationObserver(show).observe(body, { childList: true });
  document.addEventListener("keydown", (event) => {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j") move(1);
    else if (event.key === "k") move(-1);
    else if (event.key === "Enter" && selected && !event.target.closest("a, button")) {
      open(rows().find((row) => row.dataset.study === selected));
    }
    else if (event.key === "n") open(rows()[0]);
    else return;
    event.preventDefault();
  });
}

// Study page: n opens the next open study, w the worklist.
function setupStudyKeys() {
  const nav = document.getElementById("study-nav");
  if (!nav) return;
  document.addEventListener("keydown", (event) => {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const link = { n: "next-study", w: "back-to-worklist" }[event.key];
    const target = link && document.getElementById(link);
    if (!target) return;
    event.preventDefault();
    window.location.assign(target.href);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupViewers(document);
  setupWorklist();
  setupAnalyse();
  setupConfirmations();
  setupWorklistKeys();
  setupStudyKeys();
});
