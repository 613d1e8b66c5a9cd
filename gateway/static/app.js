// The s2s page: pick or drop a video, upload it with progress, follow the job, play and download the result.
"use strict";

const $ = (id) => document.getElementById(id);
let chosen = null;

function show(id, visible) { $(id).hidden = !visible; }

function fail(message) {
  $("error").textContent = message;
  show("error", true);
  $("start").disabled = !chosen;
}

function choose(file) {
  chosen = file || null;
  show("error", false);
  $("start").disabled = !chosen;
  $("drop").querySelector("strong").textContent = chosen ? chosen.name : "Choose a video";
}

function errorText(xhrOrBody, fallback) {
  try {
    const body = typeof xhrOrBody === "string" ? JSON.parse(xhrOrBody) : xhrOrBody;
    if (body && body.error) return body.error.message + (body.error.retryable ? " (you can try again)" : "");
  } catch (_) { /* not JSON */ }
  return fallback;
}

function upload(file) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.open("POST", "/v1/jobs");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        $("upload").value = e.loaded / e.total;
        $("upload-text").textContent = Math.round((100 * e.loaded) / e.total) + " %";
      }
    };
    xhr.onload = () => {
      if (xhr.status === 202) resolve(JSON.parse(xhr.responseText));
      else reject(new Error(errorText(xhr.responseText, "upload failed (HTTP " + xhr.status + ")")));
    };
    xhr.onerror = () => reject(new Error("the server could not be reached"));
    xhr.send(form);
  });
}

function follow(job) {
  return new Promise((resolve, reject) => {
    const events = new EventSource(job.links.events);
    events.onmessage = (e) => {
      const state = JSON.parse(e.data);
      const total = state.windows_total;
      $("process").value = state.progress;
      $("process-text").textContent = state.status === "queued" ? "waiting…"
        : total ? state.windows_done + " / " + total + " windows" : state.status + "…";
      if (state.status === "done") { events.close(); resolve(state); }
      else if (state.status === "failed" || state.status === "cancelled") {
        events.close();
        reject(new Error(errorText(state, "processing failed")));
      }
    };
    events.addEventListener("gone", () => { events.close(); reject(new Error("the job is gone (deleted or expired)")); });
    events.onerror = () => { /* EventSource reconnects by itself; the job state is on the server */ };
  });
}

async function start() {
  if (!chosen) return;
  $("start").disabled = true;
  show("error", false);
  show("result", false);
  show("status", true);
  $("filename").textContent = chosen.name + " (" + (chosen.size / 1e6).toFixed(1) + " MB)";
  $("upload").value = 0; $("process").value = 0;
  $("upload-text").textContent = ""; $("process-text").textContent = "";
  try {
    const job = await upload(chosen);
    $("upload").value = 1; $("upload-text").textContent = "done";
    const done = await follow(job);
    $("process-text").textContent = "done";
    $("player").src = done.links.video;
    $("download-video").href = done.links.video;
    $("download-audio").href = done.links.audio;
    show("result", true);
  } catch (err) {
    fail(err.message);
  }
}

$("file").addEventListener("change", (e) => choose(e.target.files[0]));
$("start").addEventListener("click", start);
$("again").addEventListener("click", () => { show("result", false); show("status", false); choose(null); $("file").value = ""; });
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]); });
