// speechrag's page: search, ask, record a question, play the moments. No libraries.
"use strict";

const $ = (id) => document.getElementById(id);
// A server started with --token: open the page as /#token=SECRET.
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
let hits = [];
let passages = [];  // the answer's [n] -> the index in `hits` of the moment it plays
const STOPWORDS = new Set(("the and for are was were has have had his her its not but with " +
  "from this that what which who whom whose when where why how does did can could would " +
  "should about into than then there their they them you your our").split(" "));
let lastQuery = "";

function mmss(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

async function failure(response) {
  try {
    const body = await response.json();
    const detail = Array.isArray(body.detail)
      ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    return `${detail || response.statusText} (HTTP ${response.status})`;
  } catch (e) {
    return `the server answered HTTP ${response.status}`;
  }
}

function baseName(source) {
  return source.split("/").pop();
}

// The segment's text with the question's words marked (built as nodes: no HTML injection).
function markedText(text, query) {
  const span = document.createElement("p");
  span.className = "text";
  const words = new Set((query.toLowerCase().match(/[a-z0-9']{3,}/g) || [])
    .filter((w) => !STOPWORDS.has(w)));
  for (const part of (text || "").split(/(\s+)/)) {
    const bare = part.toLowerCase().replace(/[^a-z0-9']/g, "");
    if (words.has(bare)) {
      const m = document.createElement("mark");
      m.textContent = part;
      span.appendChild(m);
    } else {
      span.appendChild(document.createTextNode(part));
    }
  }
  return span;
}

function audioUrl(id) {
  const url = `/api/segments/${encodeURIComponent(id)}/audio`;
  return token ? `${url}?token=${encodeURIComponent(token)}` : url;
}

function play(index) {
  const hit = hits[index];
  if (!hit || hit.start === null) return;
  const player = $("player");
  document.querySelectorAll("#hits li").forEach((li, i) =>
    li.classList.toggle("playing", i === index));
  player.src = audioUrl(hit.id);
  player.dataset.start = hit.start;
  player.play().catch((e) => showError(`cannot play this moment: ${e.message}`));
}

function renderHits(found, query) {
  hits = found;
  const list = $("hits");
  list.replaceChildren();
  $("hits-title").hidden = false;
  if (!found.length) {
    const li = document.createElement("li");
    li.textContent = "No moments found: the index holds nothing yet.";
    list.appendChild(li);
    return;
  }
  found.forEach((hit, i) => {
    const li = document.createElement("li");
    li.id = `hit-${i + 1}`;
    const head = document.createElement("div");
    head.className = "hit-head";
    const source = document.createElement("span");
    source.className = "source";
    source.textContent = baseName(hit.source);
    source.title = hit.source;
    head.appendChild(source);
    if (hit.start !== null) {
      const span = document.createElement("span");
      span.className = "span";
      span.textContent = `${mmss(hit.start)}–${mmss(hit.end)}`;
      head.appendChild(span);
    }
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `score ${hit.score.toFixed(3)}`;
    head.appendChild(score);
    if (hit.start !== null) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "play";
      button.textContent = "▶ Play";
      button.setAttribute("aria-label",
        `Play ${baseName(hit.source)} from ${mmss(hit.start)} to ${mmss(hit.end)}`);
      button.addEventListener("click", () => play(i));
      head.appendChild(button);
    }
    li.appendChild(head);
    li.appendChild(markedText(hit.text, query));
    list.appendChild(li);
  });
}

async function search(query) {
  showError("");
  lastQuery = query;
  const response = await fetch(`/api/search?q=${encodeURIComponent(query)}&k=10`, { headers });
  if (!response.ok) return showError(await failure(response));
  const body = await response.json();
  renderHits(body.hits, body.query);
}

// The answer with each [n] made a link that plays the cited moment.
function renderAnswer(text) {
  const el = $("answer");
  el.replaceChildren();
  for (const part of text.split(/(\[\d+\])/)) {
    const m = part.match(/^\[(\d+)\]$/);
    const i = m ? passages[Number(m[1]) - 1] : undefined;
    if (i !== undefined && i !== null && hits[i]) {
      const a = document.createElement("a");
      a.href = `#hit-${i + 1}`;
      a.textContent = part;
      a.className = "cite";
      a.addEventListener("click", (e) => { e.preventDefault(); play(i); });
      el.appendChild(a);
    } else {
      el.appendChild(document.createTextNode(part));
    }
  }
}

async function ask(body, isForm) {
  showError("");
  $("answer-panel").hidden = false;
  $("answer").textContent = "…";
  $("answer-meta").textContent = "";
  const response = await fetch("/api/ask", {
    method: "POST",
    headers: isForm ? headers : { ...headers, "Content-Type": "application/json" },
    body: isForm ? body : JSON.stringify(body),
  });
  if (!response.ok) {
    $("answer-panel").hidden = true;
    return showError(await failure(response));
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = (block.match(/^event: (.*)$/m) || [])[1];
      const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
      if (event === "hits") {
        renderHits(data.hits, data.query);
        passages = data.passages || data.hits.map((_, i) => i);
        if (data.dropped) $("answer-meta").textContent =
          `${data.dropped} moment(s) did not fit the LLM's context.`;
      } else if (event === "token") {
        text += data.text;
        renderAnswer(text);
      } else if (event === "citations") {
        renderAnswer(data.answer);
        const t = data.timings;
        $("answer-meta").textContent +=
          ` First words after ${(t.first_token_ms / 1000).toFixed(1)} s, ` +
          `done after ${(t.total_ms / 1000).toFixed(1)} s.`;
      } else if (event === "error") {
        showError(data.detail);
      }
    }
  }
}

// -- recording a spoken question (the browser's microphone) -------------------------------
let recorder = null;

async function toggleRecording() {
  const button = $("record-button");
  if (recorder) {
    recorder.stop();
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      recorder = null;
      button.setAttribute("aria-pressed", "false");
      button.textContent = "● Record";
      const form = new FormData();
      form.append("audio", new Blob(chunks, { type: chunks[0]?.type || "audio/webm" }),
        "question.webm");
      if (!$("ask-button").hidden) return ask(form, true);
      const response = await fetch("/api/search", { method: "POST", headers, body: form });
      if (!response.ok) return showError(await failure(response));
      const body = await response.json();
      $("q").value = body.query;
      renderHits(body.hits, body.query);
    };
    recorder.start();
    button.setAttribute("aria-pressed", "true");
    button.textContent = "■ Stop and send";
  } catch (e) {
    showError(`cannot record: ${e.message}`);
  }
}

// -- wiring ------------------------------------------------------------------------------
$("player").addEventListener("loadedmetadata", () => {
  // the served audio is exactly the hit: it starts at the hit's start
  $("player").currentTime = 0;
});
$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("q").value.trim();
  if (!q) return showError("Type a question first.");
  search(q).catch((err) => showError(`search failed: ${err.message}`));
});
$("ask-button").addEventListener("click", () => {
  const q = $("q").value.trim();
  if (!q) return showError("Type a question first.");
  ask({ q, k: 5 }, false).catch((err) => showError(`the answer failed: ${err.message}`));
});
$("record-button").addEventListener("click", toggleRecording);

fetch("/api/index", { headers }).then(async (response) => {
  if (!response.ok) return showError(await failure(response));
  const s = await response.json();
  const seconds = s.audio_hours * 3600;
  const hours = seconds >= 3600 ? `${s.audio_hours.toFixed(1)} hours`
    : seconds >= 60 ? `${Math.round(seconds / 60)} minutes` : `${Math.round(seconds)} seconds`;
  const docs = s.documents ? `, ${s.documents} documents` : "";
  $("summary").textContent = `Model ${s.model.kind}: ${s.files} recordings (${hours})` +
    `${docs}, ${s.segments} segments` + (s.llm ? `; answers by ${s.llm}` : "");
  $("ask-button").hidden = !s.llm;
}).catch((err) => showError(`cannot reach the server: ${err.message}`));
