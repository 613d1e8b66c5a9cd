// The s2s page: take an API key, pick or drop a video, upload it with progress, follow the job, play and
// download the result. Every API call carries the key in a header (never in a URL or a cookie), so the
// progress stream is read with fetch rather than EventSource, and the results are fetched as blobs.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "s2s-api-key";
let chosen = null;
let blobs = [];

function show(id, visible) { $(id).hidden = !visible; }

function headers() {
  const key = localStorage.getItem(KEY);
  return key ? { Authorization: "Bearer " + key } : {};
}

function fail(message) {
  $("error").textContent = message;
  show("error", true);
  $("start").disabled = !chosen;
}

function choose(file) {
  chosen = file || null;
  show("error", false);
  $("start").disabled = !chosen;
  $("drop").querySelector("strong").textContent = chosen ? chosen.name : "Choose a video or a picture";
}

function errorText(xhrOrBody, fallback) {
  try {
    const body = typeof xhrOrBody === "string" ? JSON.parse(xhrOrBody) : xhrOrBody;
    if (body && body.error) return body.error.message + (body.error.retryable ? " (you can try again)" : "");
  } catch (_) { /* not JSON */ }
  return fallback;
}

// Who are we? Shows the key form when the server wants a key we do not have (or refused ours).
async function signIn(refusedMessage) {
  let response;
  try {
    response = await fetch("/v1/me", { headers: headers() });
  } catch (_) {
    fail("the server could not be reached");
    return;
  }
  const signedIn = response.ok;
  show("auth", !signedIn);
  show("pick", signedIn);
  if (!signedIn) {
    if (localStorage.getItem(KEY)) fail(refusedMessage || "the server refused the stored key; enter another");
    $("key").focus();
    return;
  }
  show("error", false);
  const me = await response.json();
  show("whoami", me.auth);
  $("key-id").textContent = me.auth ? "Key: " + me.key : "";
}

function upload(file) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.open("POST", "/v1/jobs");
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
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

function showState(state) {
  const total = state.windows_total;
  $("process").value = state.progress;
  $("process-text").textContent = state.status === "queued" ? "waiting…"
    : total ? state.windows_done + " / " + total + " windows" : state.status + "…";
}

// The job's state until it ends: the server-sent events read from a fetch stream (they end after a
// while, or the server is busy: then poll once and read them again).
async function follow(job) {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  for (;;) {
    const response = await fetch(job.links.events, { headers: headers() });
    if (response.status === 404) throw new Error("the job is gone (deleted or expired)");
    if (response.status === 401) throw new Error("the server no longer accepts this key; enter another");
    if (response.ok) {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (/^event: gone/m.test(event)) throw new Error("the job is gone (deleted or expired)");
          const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (!data) continue;
          const state = JSON.parse(data);
          showState(state);
          if (state.status === "done") return state;
          if (state.status === "failed" || state.status === "cancelled") {
            throw new Error(errorText(state, "processing failed"));
          }
        }
      }
    } else {
      const polled = await fetch(job.links.self, { headers: headers() });
      if (polled.ok) {
        const state = await polled.json();
        showState(state);
        if (state.status === "done") return state;
        if (state.status === "failed" || state.status === "cancelled") throw new Error(errorText(state, "processing failed"));
      }
      await sleep(2000);
    }
  }
}

async function blobUrl(url) {
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) throw new Error(errorText(await response.text(), "download failed (HTTP " + response.status + ")"));
  const link = URL.createObjectURL(await response.blob());
  blobs.push(link);
  return link;
}

function forgetResults() {
  blobs.forEach((link) => URL.revokeObjectURL(link));
  blobs = [];
  $("player").removeAttribute("src");
  $("spectrogram").removeAttribute("src");
  show("spectrogram-box", false);
}

async function start() {
  if (!chosen) return;
  $("start").disabled = true;
  show("error", false);
  show("result", false);
  show("status", true);
  forgetResults();
  $("filename").textContent = chosen.name + " (" + (chosen.size / 1e6).toFixed(1) + " MB)";
  $("upload").value = 0; $("process").value = 0;
  $("upload-text").textContent = ""; $("process-text").textContent = "";
  try {
    const job = await upload(chosen);
    $("upload").value = 1; $("upload-text").textContent = "done";
    const done = await follow(job);
    $("process-text").textContent = "done";
    const video = await blobUrl(done.links.video);
    $("player").src = video;
    $("download-video").href = video;
    $("download-video").download = "s2s-" + done.id + ".mp4";
    $("download-audio").href = await blobUrl(done.links.audio);
    $("download-audio").download = "s2s-" + done.id + ".wav";
    show("result", true);
    try {  // the picture is a bonus: the sound is there without it (a job from an older server has none)
      $("spectrogram").src = await blobUrl(done.links.spectrogram);
      show("spectrogram-box", true);
    } catch (err) {
      show("spectrogram-box", false);
    }
  } catch (err) {
    fail(err.message);
  }
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("key").value.trim();
  if (!key) return;
  localStorage.setItem(KEY, key);
  $("key").value = "";
  signIn("the server refused this key");
});
$("key-forget").addEventListener("click", () => {
  localStorage.removeItem(KEY);
  forgetResults();
  show("result", false); show("status", false); show("whoami", false);
  signIn();
});
$("file").addEventListener("change", (e) => choose(e.target.files[0]));
$("start").addEventListener("click", start);
$("again").addEventListener("click", () => {
  show("result", false); show("status", false); forgetResults(); choose(null); $("file").value = "";
});
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]); });
signIn();
