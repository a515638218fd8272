// The CLEF cohort explorer. Every data call goes to the service's JSON API with the API key
// in the X-API-Key header; the key lives in this tab's sessionStorage only (never in a URL,
// never logged). Every string from the API is inserted with textContent.

const KEY_NAME = "clef.apiKey";
const PAGE_SIZE = 50;
const EEG_SECONDS = 10;
const COLUMNS = [
  ["session_id", "Session"], ["site", "Site"], ["setting", "Setting"], ["sex", "Sex"],
  ["age_years", "Age"], ["duration_s", "Duration"], ["reference", "Reference"],
];

const $ = (id) => document.getElementById(id);
const state = {
  offset: 0, total: 0, sort: "session_id", order: "asc", filters: [],
  session: null, eegStart: 0, eegDuration: 0, eegPage: null, eegTicket: 0, explainTicket: 0, probes: [],
};

class ApiError extends Error {
  constructor(status, kind, detail) { super(detail); this.status = status; this.kind = kind; }
}

function key() { return sessionStorage.getItem(KEY_NAME); }

async function api(path, options = {}) {
  const headers = { "X-API-Key": key() || "", ...(options.headers || {}) };
  const r = await fetch(path, { ...options, headers, cache: "no-store", referrerPolicy: "no-referrer" });
  if (!r.ok) {
    let kind = "http_" + r.status, detail = r.statusText;
    try { const e = await r.json(); kind = e.kind || kind; detail = e.detail || detail; } catch (_) { /* not JSON */ }
    if (r.status === 401 || r.status === 403) { forgetKey(detail); }
    throw new ApiError(r.status, kind, detail);
  }
  return r;
}
const getJSON = async (path) => (await api(path)).json();

function status(text) { $("status").textContent = text; }

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function fmt(k, v) {
  if (v === null || v === undefined) return "—";
  if (k === "age_years") return v >= 90 ? "90+" : Number(v).toFixed(0);
  if (k === "duration_s") return (v / 60).toFixed(1) + " min";
  if (k === "score") return Number(v).toFixed(3);
  return String(v);
}

// -- views ---------------------------------------------------------------------------------
const VIEWS = ["key", "cohort", "text", "session"];
function show(view) {
  for (const v of VIEWS) {
    $("view-" + v).hidden = v !== view;
    const tab = $("nav-" + v);
    if (tab) tab.setAttribute("aria-selected", String(v === view));
  }
}

// -- the key -------------------------------------------------------------------------------
function forgetKey(reason) {
  sessionStorage.removeItem(KEY_NAME);
  $("key-error").textContent = reason ? "Key refused: " + reason : "";
  $("key-input").value = "";
  show("key");
  $("key-input").focus();
}

async function submitKey(ev) {
  ev.preventDefault();
  const k = $("key-input").value.trim();
  if (!k) return;
  sessionStorage.setItem(KEY_NAME, k);
  $("key-input").value = "";
  try {
    const tasks = await getJSON("/tasks");
    state.probes = tasks.tasks.map((t) => t.task);
    $("key-error").textContent = "";
    status("model " + tasks.model_id);
    openCohort();
  } catch (e) {
    if (!(e instanceof ApiError && (e.status === 401 || e.status === 403))) {
      $("key-error").textContent = "The service did not answer: " + e.message;
    }
  }
}

// -- filters and the cohort table ----------------------------------------------------------
function readFilters() {
  const out = [];
  for (const name of ["site", "setting", "reference"]) {
    const v = $("f-" + name).value.trim();
    if (v) out.push(name + "=" + v);
  }
  if ($("f-sex").value) out.push("sex=" + $("f-sex").value);
  const lo = $("f-age-lo").value.trim(), hi = $("f-age-hi").value.trim();
  if (lo || hi) out.push("age=" + lo + "-" + hi);
  return out;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of params) q.append(k, v);
  return q.toString();
}

function cohortQuery(extra = []) {
  return query([...state.filters.map((f) => ["filter", f]), ["sort", state.sort], ["order", state.order], ...extra]);
}

function header(row, columns, sortable) {
  row.replaceChildren();
  for (const [k, label] of columns) {
    const th = el("th", null, { scope: "col" });
    if (sortable) {
      const b = el("button", label + (state.sort === k ? (state.order === "asc" ? " ▲" : " ▼") : ""),
                   { type: "button", "data-sort": k });
      b.addEventListener("click", () => {
        state.order = state.sort === k && state.order === "asc" ? "desc" : "asc";
        state.sort = k; state.offset = 0; loadCohort();
      });
      th.append(b);
      if (state.sort === k) th.setAttribute("aria-sort", state.order === "asc" ? "ascending" : "descending");
    } else {
      th.textContent = label;
    }
    row.append(th);
  }
}

function rows(body, sessions, columns) {
  body.replaceChildren();
  for (const s of sessions) {
    const tr = el("tr", null, { tabindex: "0", class: "row", "data-session": s.session_id });
    for (const [k] of columns) tr.append(el("td", fmt(k, s[k]), { "data-col": k }));
    tr.addEventListener("click", () => openSession(s.session_id));
    tr.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); openSession(s.session_id); }
      else if (ev.key === "ArrowDown" && tr.nextElementSibling) { ev.preventDefault(); tr.nextElementSibling.focus(); }
      else if (ev.key === "ArrowUp" && tr.previousElementSibling) { ev.preventDefault(); tr.previousElementSibling.focus(); }
    });
    body.append(tr);
  }
}

function openCohort() { show("cohort"); loadCohort(); }

async function loadCohort() {
  header($("cohort-head"), COLUMNS, true);
  $("cohort-summary").textContent = "Loading…";
  try {
    const c = await getJSON("/sessions?" + cohortQuery([["offset", state.offset], ["limit", PAGE_SIZE]]));
    state.total = c.total;
    rows($("cohort-body"), c.sessions, COLUMNS);
    $("cohort-summary").textContent = c.total + " sessions" + (c.filters.length ? " (" + c.filters.join(", ") + ")" : "");
    const last = Math.min(c.offset + c.sessions.length, c.total);
    $("page-info").textContent = c.total ? (c.offset + 1) + "–" + last + " of " + c.total : "none";
    $("page-prev").disabled = c.offset === 0;
    $("page-next").disabled = last >= c.total;
  } catch (e) {
    $("cohort-body").replaceChildren();
    $("cohort-summary").textContent = "Cohort not loaded: " + e.message;
  }
}

// The cohort as a file (fmt: "csv" or "parquet"), fetched with the key and saved from a blob.
async function exportCohort(fmt) {
  const name = fmt === "csv" ? "CSV" : "Parquet";
  status("exporting the cohort as " + name + "…");
  try {
    const blob = await (await api("/cohort." + fmt + "?" + cohortQuery())).blob();
    const url = URL.createObjectURL(blob);
    const a = el("a", null, { href: url, download: "cohort." + fmt });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    status("cohort exported as " + name + " (" + state.total + " sessions)");
  } catch (e) { status("export failed: " + e.message); }
}

// -- search by words -----------------------------------------------------------------------
async function textSearch(ev) {
  ev.preventDefault();
  const text = $("text-input").value.trim();
  if (!text) return;
  $("text-error").textContent = "";
  $("text-summary").textContent = "Searching…";
  const cols = [["score", "Score"], ...COLUMNS];
  header($("text-head"), cols, false);
  try {
    const body = { text, k: Number($("text-k").value) || 20, filters: readFilters(),
                   per_patient: $("text-per-patient").checked };
    const r = await (await api("/search/text", { method: "POST", body: JSON.stringify(body),
                                                 headers: { "Content-Type": "application/json" } })).json();
    rows($("text-body"), r.neighbours, cols);
    $("text-summary").textContent = r.neighbours.length + " sessions for “" + r.text + "”"
      + (r.filters.length ? " (" + r.filters.join(", ") + ")" : "");
  } catch (e) {
    $("text-body").replaceChildren();
    $("text-summary").textContent = "";
    $("text-error").textContent = (e.kind === "no_report_tower" ? "Search by words is not available: " : "")
      + e.message;
  }
}

// -- one session ---------------------------------------------------------------------------
async function openSession(id) {
  state.session = id;
  state.eegStart = 0;
  $("nav-session").disabled = false;
  show("session");
  $("session-title").textContent = "Session " + id;
  const enc = encodeURIComponent(id);
  $("explain-panel").hidden = true;
  state.explainTicket++;  // an explanation still coming is of the previous session
  await Promise.all([loadMeta(enc), loadProbes(enc, id), loadSpectrogram(enc), loadNeighbours(enc), loadEEG()]);
  $("eeg").focus();
}

async function loadMeta(enc) {
  const dl = $("session-meta");
  dl.replaceChildren();
  try {
    const m = await getJSON("/sessions/" + enc);
    for (const [k, label] of [...COLUMNS, ["n_windows", "Windows"]]) {
      dl.append(el("dt", label), el("dd", fmt(k, m[k])));
    }
    const findings = await findingsOf(m.session_id).catch(() => "");
    if (findings) dl.append(el("dt", "Report findings"), el("dd", findings, { id: "session-findings" }));
  } catch (e) { dl.append(el("dt", "error"), el("dd", e.message)); }
}

async function loadProbes(enc, id) {
  const body = $("probes-body");
  body.replaceChildren();
  $("probes-note").textContent = "";
  if (!state.probes.length) { $("probes-note").textContent = "No probes served (clef serve --probes)."; return; }
  try {
    const p = await getJSON("/sessions/" + enc + "/probabilities");
    for (const [task, prob] of Object.entries(p.probabilities)) {
      const tr = el("tr");
      const meter = el("meter", null, { min: "0", max: "1", value: String(prob) });
      const b = el("button", "Explain", { type: "button" });
      b.addEventListener("click", () => explain(enc, id, task));
      const t = el("td"); t.append(meter);
      const x = el("td"); x.append(b);
      tr.append(el("td", task), el("td", Number(prob).toFixed(3)), t, x);
      body.append(tr);
    }
  } catch (e) { $("probes-note").textContent = "Probe scores not loaded: " + e.message; }
}

// The occlusion explanation of a probe score: seconds of work on the server, so the panel
// says so meanwhile and the rest of the page stays usable; only the latest request is shown.
async function explain(enc, id, task) {
  const ticket = ++state.explainTicket;
  $("explain-panel").hidden = false;
  $("explain-title").textContent = "Why " + task + "?";
  const t0 = performance.now();
  const progress = () => {
    $("explain-summary").textContent = "Explaining: occluding regions, minutes and bands… "
      + ((performance.now() - t0) / 1000).toFixed(0) + " s";
  };
  progress();
  const timer = setInterval(() => { if (ticket === state.explainTicket) progress(); }, 1000);
  const body = $("explain-body");
  body.replaceChildren();
  try {
    const x = await getJSON("/sessions/" + enc + "/explain?" + query([["task", task], ["channels", "false"]]));
    if (state.session !== id || ticket !== state.explainTicket) return;
    $("explain-summary").textContent = "score " + x.baseline.toFixed(3) + "; top band " + (x.top_band || "—")
      + ", hemisphere " + (x.hemisphere || "—") + ", top minute " + (x.top_minute ?? "—")
      + " (the part whose occlusion drops the score most; " + x.seconds.toFixed(1) + " s)";
    for (const [group, values] of [["region", x.region], ["band", x.band]]) {
      for (const [name, v] of Object.entries(values)) {
        const tr = el("tr");
        tr.append(el("td", group), el("td", name), el("td", v === null ? "—" : v.toFixed(4)));
        body.append(tr);
      }
    }
  } catch (e) {
    if (ticket === state.explainTicket) $("explain-summary").textContent = "No explanation: " + e.message;
  } finally { clearInterval(timer); }
}

async function loadSpectrogram(enc) {
  const img = $("spectrogram");
  img.hidden = true;
  $("spectrogram-note").textContent = "Computing the spectrogram…";
  try {
    const blob = await (await api("/sessions/" + enc + "/spectrogram.png")).blob();
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    await new Promise((resolve, reject) => {
      img.onload = resolve; img.onerror = reject; img.src = URL.createObjectURL(blob);
    });
    img.hidden = false;
    $("spectrogram-note").textContent = "";
  } catch (e) { $("spectrogram-note").textContent = "No spectrogram: " + (e.message || "image not readable"); }
}

// The findings a session's report states, as text ("" without a report: nothing is shown).
async function findingsOf(id) {
  const r = await getJSON("/sessions/" + encodeURIComponent(id) + "/findings");
  if (r.findings === null) return "";
  return r.findings.length ? r.findings.map((f) => f.replaceAll("_", " ")).join(", ") : "none stated";
}

async function loadNeighbours(enc) {
  const id = state.session;
  const cols = [["score", "Similarity"], ...COLUMNS, ["findings", "Report findings"]];
  header($("neighbours-head"), cols, false);
  $("neighbours-note").textContent = "";
  delete $("neighbours-body").dataset.findings;
  let r;
  try {
    r = await getJSON("/sessions/" + enc + "/similar?" + query([["k", 10]]));
  } catch (e) {
    $("neighbours-body").replaceChildren();
    $("neighbours-note").textContent = "Neighbours not loaded: " + e.message;
    return;
  }
  rows($("neighbours-body"), r.neighbours.map((n) => ({ ...n, findings: "" })), cols);
  if (!r.neighbours.length) $("neighbours-note").textContent = "No other session.";
  // each neighbour's findings as they come; one that fails shows nothing, the rest stay
  await Promise.all(Array.from($("neighbours-body").children, async (tr) => {
    let text = "";
    try { text = await findingsOf(tr.dataset.session); } catch (_) { /* shown as no findings */ }
    if (state.session !== id) return;
    tr.querySelector("td[data-col='findings']").textContent = text;
  }));
  if (state.session === id) $("neighbours-body").dataset.findings = "loaded";
}

// -- the EEG page --------------------------------------------------------------------------
async function loadEEG() {
  const id = state.session;
  const ticket = ++state.eegTicket;  // only the latest request draws (settings change faster than pages come)
  const montage = $("eeg-montage").value;
  $("eeg-note").textContent = "";
  try {
    const page = await getJSON("/sessions/" + encodeURIComponent(id) + "/eeg?"
      + query([["start", state.eegStart], ["seconds", EEG_SECONDS], ["montage", montage],
               ["highpass", $("eeg-highpass").value], ["lowpass", $("eeg-lowpass").value],
               ["notch", $("eeg-notch").value]]));
    if (state.session !== id || ticket !== state.eegTicket) return;
    state.eegPage = page;
    state.eegStart = page.start_s;
    state.eegDuration = page.duration_s;
    drawEEG();
  } catch (e) {
    if (ticket !== state.eegTicket) return;
    state.eegPage = null;
    clearCanvas();
    $("eeg-info").textContent = "";
    $("eeg-note").textContent = "No EEG: " + e.message;
  }
}

function pageBy(pages) {
  if (!state.eegPage) return;
  const next = Math.max(0, Math.min(state.eegStart + pages * EEG_SECONDS, state.eegDuration - EEG_SECONDS));
  if (next === state.eegStart) return;
  state.eegStart = next;
  loadEEG();
}

function clearCanvas() {
  const c = $("eeg");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
}

function drawEEG() {
  const page = state.eegPage;
  const c = $("eeg");
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(300, c.clientWidth), h = Math.max(200, c.clientHeight);
  c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  const ctx = c.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
  const left = 70, right = 10, top = 10, bottom = 22;
  const n = page.channels.length;
  const spacing = (h - top - bottom) / n;              // one trace per 10 mm
  const gain = Number($("eeg-gain").value);            // µV per mm
  const pxPerUv = spacing / (10 * gain);
  const nS = Math.round(page.seconds * page.sfreq);
  const xOf = (i) => left + (w - left - right) * i / nS;
  ctx.strokeStyle = "#e3e6ea"; ctx.lineWidth = 1;
  for (let s = 0; s <= page.seconds; s++) {
    const x = xOf(s * page.sfreq);
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, h - bottom); ctx.stroke();
  }
  ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
  for (let k = 0; k < n; k++) {
    const y0 = top + spacing * (k + 0.5);
    const trace = page.data[k];
    ctx.fillStyle = trace ? "#1b1f24" : "#9aa3ad";
    ctx.fillText(page.channels[k], 4, y0);
    if (!trace) { ctx.fillText("absent", left + 8, y0); continue; }
    ctx.strokeStyle = "#1b1f24"; ctx.lineWidth = 0.8;
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < trace.length; i++) {
      const v = trace[i];
      if (v === null) { pen = false; continue; }
      const y = y0 - Math.max(-2 * spacing, Math.min(2 * spacing, v * pxPerUv));
      if (pen) ctx.lineTo(xOf(i), y); else { ctx.moveTo(xOf(i), y); pen = true; }
    }
    ctx.stroke();
  }
  ctx.fillStyle = "#5b6570"; ctx.textBaseline = "alphabetic";
  for (let s = 0; s <= page.seconds; s += 2) ctx.fillText((page.start_s + s).toFixed(0) + " s", xOf(s * page.sfreq) - 8, h - 6);
  const hz = (v) => (v ? v + " Hz" : "off");
  $("eeg-info").textContent = page.start_s.toFixed(0) + "–" + (page.start_s + page.seconds).toFixed(0) + " s of "
    + page.duration_s.toFixed(0) + " s, " + page.montage.replace("_", " ") + ", " + gain + " µV/mm, HP "
    + hz(page.highpass) + ", LP " + hz(page.lowpass) + ", notch " + hz(page.notch);
  $("eeg-prev").disabled = page.start_s <= 0;
  $("eeg-next").disabled = page.start_s + page.seconds >= page.duration_s;
  c.dataset.drawn = String(page.start_s);
}

// -- wiring --------------------------------------------------------------------------------
function init() {
  $("key-form").addEventListener("submit", submitKey);
  $("forget-key").addEventListener("click", () => forgetKey(""));
  $("nav-cohort").addEventListener("click", openCohort);
  $("nav-text").addEventListener("click", () => { show("text"); $("text-input").focus(); });
  $("nav-session").addEventListener("click", () => show("session"));
  $("filter-form").addEventListener("submit", (ev) => {
    ev.preventDefault(); state.filters = readFilters(); state.offset = 0; loadCohort();
  });
  $("f-clear").addEventListener("click", () => {
    $("filter-form").reset(); state.filters = []; state.offset = 0; loadCohort();
  });
  $("export-csv").addEventListener("click", () => exportCohort("csv"));
  $("export-parquet").addEventListener("click", () => exportCohort("parquet"));
  $("page-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadCohort(); });
  $("page-next").addEventListener("click", () => { state.offset += PAGE_SIZE; loadCohort(); });
  $("text-form").addEventListener("submit", textSearch);
  for (const id of ["eeg-montage", "eeg-highpass", "eeg-lowpass", "eeg-notch"]) $(id).addEventListener("change", loadEEG);
  $("eeg-gain").addEventListener("change", () => { if (state.eegPage) drawEEG(); });
  $("eeg-prev").addEventListener("click", () => pageBy(-1));
  $("eeg-next").addEventListener("click", () => pageBy(1));
  $("eeg").addEventListener("keydown", (ev) => {
    const step = { ArrowRight: 1, PageDown: 1, ArrowLeft: -1, PageUp: -1 }[ev.key];
    if (step) { ev.preventDefault(); pageBy(step); }
  });
  window.addEventListener("resize", () => { if (state.eegPage && !$("view-session").hidden) drawEEG(); });
  if (key()) {
    getJSON("/tasks").then((t) => { state.probes = t.tasks.map((x) => x.task); status("model " + t.model_id); openCohort(); })
      .catch(() => {});
  } else {
    show("key");
    $("key-input").focus();
  }
}

init();
