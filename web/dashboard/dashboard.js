// The live dashboard: reads this query service's API every POLL_MS and draws the numbers of one
// ad or of all ads. The choice lives in the URL (?ad_id=&range=&from=&to=&granularity=), so a
// view can be shared.
"use strict";

const POLL_MS = 2000;
const CATALOG_EVERY_POLLS = 15;
const KEY_STORAGE = "adtrack.apiKey";
// Bucket size per preset range when "auto": a few dozen to a few hundred points.
const AUTO_GRANULARITY = { "15m": "minute", "1h": "minute", "24h": "hour", "7d": "hour", "30d": "day", "90d": "day", all: "month" };

const $ = (id) => document.getElementById(id);
const counts = new Intl.NumberFormat();
const formats = {
  count: (v) => (v === null || v === undefined ? "–" : counts.format(v)),
  ctr: (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(2)} %`),
  secs: (v) => (v === null || v === undefined ? "–" : `${v.toFixed(1)} s`),
};

const state = {
  adId: "",
  range: "1h",
  from: "",
  to: "",
  granularity: "",
  sortKey: "clicks",
  sortDescending: true,
  // The viewer's zone, for buckets; UTC if the server does not know it.
  tz: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
  ads: new Map(),
  rows: [],
  polls: 0,
  timer: null,
  // Each read of the API, numbered: an answer to an older read than the newest is not drawn
  // (the view changed while it was on its way).
  generation: 0,
  lastUpdate: null,
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// How long one answer may take before the read counts as failed (polling goes on).
const REQUEST_TIMEOUT_MS = 10000;

// Thrown for an answer that is not 2xx: `problem` is its RFC 9457 body.
class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// The query service could not be reached, or did not answer in time.
class NetworkError extends Error {}

// The view asks for something that cannot be read (a custom range without a start).
class ViewError extends Error {}

async function api(path) {
  const key = localStorage.getItem(KEY_STORAGE);
  let response;
  try {
    response = await fetch(`..${path}`, {
      headers: key ? { authorization: `Bearer ${key}` } : {},
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw new NetworkError(error.message);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// ---- the view's parameters -------------------------------------------------------------

// `datetime-local` values are the viewer's wall-clock time; the API and the URL take RFC 3339,
// so that a shared link means the same window in every zone.
const localToIso = (value) => new Date(value).toISOString();
function isoToLocal(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}
const validLocal = (value) => value !== "" && !Number.isNaN(new Date(value).getTime());
const isoParamToLocal = (value) => (value && !Number.isNaN(new Date(value).getTime()) ? isoToLocal(new Date(value)) : "");

function readUrl() {
  const params = new URLSearchParams(location.search);
  const adId = params.get("ad_id") || "";
  state.adId = UUID.test(adId) ? adId.toLowerCase() : "";
  state.range = params.get("range") || "1h";
  state.from = isoParamToLocal(params.get("from"));
  state.to = isoParamToLocal(params.get("to"));
  state.granularity = params.get("granularity") || "";
}

function writeUrl() {
  const params = new URLSearchParams();
  if (state.adId) params.set("ad_id", state.adId);
  params.set("range", state.range);
  if (state.range === "custom") {
    if (validLocal(state.from)) params.set("from", localToIso(state.from));
    if (validLocal(state.to)) params.set("to", localToIso(state.to));
  }
  if (state.granularity) params.set("granularity", state.granularity);
  history.replaceState(null, "", `?${params}`);
}

function windowParams() {
  const params = new URLSearchParams();
  if (state.range === "custom") {
    if (!validLocal(state.from)) throw new ViewError("Choose the start of the custom range.");
    params.set("from", localToIso(state.from));
    if (validLocal(state.to)) params.set("to", localToIso(state.to));
  } else {
    params.set("timeframe", state.range);
  }
  return params;
}

function granularity() {
  if (state.granularity) return state.granularity;
  if (state.range !== "custom") return AUTO_GRANULARITY[state.range];
  const hours = ((state.to ? new Date(state.to) : new Date()) - new Date(state.from)) / 3.6e6;
  return hours <= 6 ? "minute" : hours <= 8 * 24 ? "hour" : hours <= 400 * 24 ? "day" : "month";
}

// ---- reading ---------------------------------------------------------------------------

async function loadCatalog() {
  const ads = new Map();
  for (let page = 1; ; page++) {
    const list = await api(`/ads?page=${page}&limit=100`);
    for (const ad of list.ads) ads.set(ad.id, ad);
    if (page >= list.pagination.total_pages) break;
  }
  state.ads = ads;
  const select = $("ad");
  const chosen = state.adId;
  select.replaceChildren(new Option("All ads", ""));
  for (const ad of [...ads.values()].sort((a, b) => a.title.localeCompare(b.title))) {
    select.add(new Option(ad.active ? ad.title : `${ad.title} (inactive)`, ad.id));
  }
  if (chosen && !ads.has(chosen)) {
    // Asked for by the URL but not in the catalog: shown as asked, the API's 404 says why.
    select.add(new Option(`${chosen} (not in the catalog)`, chosen));
  }
  select.value = chosen;
}

async function fetchSeries() {
  const params = windowParams();
  params.set("granularity", granularity());
  params.set("tz", state.tz);
  const path = state.adId ? `/ads/${encodeURIComponent(state.adId)}/analytics` : "/ads/analytics/series";
  try {
    return await api(`${path}?${params}`);
  } catch (error) {
    if (error instanceof ApiError && error.problem.field === "tz" && state.tz !== "UTC") {
      state.tz = "UTC";
      return fetchSeries();
    }
    throw error;
  }
}

async function refresh() {
  const generation = ++state.generation;
  const current = () => generation === state.generation;
  try {
    if (state.ads.size === 0 || state.polls % CATALOG_EVERY_POLLS === 0) await loadCatalog();
    state.polls++;
    const [series, report] = await Promise.all([fetchSeries(), api(`/ads/analytics?${windowParams()}`)]);
    if (!current()) return;
    render(series, report);
    showProblem(null);
    $("key-form").hidden = true;
    $("forget-key").hidden = !localStorage.getItem(KEY_STORAGE);
    state.lastUpdate = new Date();
    showFreshness(series.newest_event_received_at, $("live").checked ? "live" : "paused");
  } catch (error) {
    if (!current()) return;
    if (error instanceof ApiError && error.status === 401) {
      $("key-form").hidden = false;
      showProblem(localStorage.getItem(KEY_STORAGE) ? "The API key was refused." : null);
      showFreshness(null, "error", "needs the API key");
    } else if (error instanceof ApiError) {
      showProblem(`${error.status}: ${error.message}`);
      showFreshness(null, "error");
    } else if (error instanceof NetworkError) {
      showProblem(`The query service did not answer: ${error.message}`);
      showFreshness(null, "error");
    } else if (error instanceof ViewError) {
      showProblem(error.message);
      showFreshness(null, "error");
    } else {
      showProblem(`The dashboard failed: ${error.message}`);
      showFreshness(null, "error");
      // A bug, not a refusal: reported like any uncaught error (the browser test fails on it).
      setTimeout(() => {
        throw error;
      });
    }
  }
}

function schedule() {
  clearTimeout(state.timer);
  if (!$("live").checked) return;
  state.timer = setTimeout(async () => {
    await refresh();
    schedule();
  }, POLL_MS);
}

// Reads now (after a change of the view), then keeps polling.
async function refreshNow() {
  writeUrl();
  clearTimeout(state.timer);
  await refresh();
  schedule();
}

// ---- drawing ---------------------------------------------------------------------------

function showProblem(text) {
  $("problem").hidden = !text;
  $("problem").textContent = text || "";
}

// `why`: what to say instead of the freshness when the read failed.
function showFreshness(newest, status, why = "see the error") {
  const element = $("freshness");
  element.dataset.state = status;
  const updated = state.lastUpdate ? `updated ${state.lastUpdate.toLocaleTimeString()}` : "never updated";
  if (status === "error") {
    $("freshness-text").textContent = `${why} · ${updated}`;
    return;
  }
  if (!newest) {
    $("freshness-text").textContent = `no events yet · ${updated}`;
    return;
  }
  const age = Math.max(0, Math.round((Date.now() - new Date(newest)) / 1000));
  const ago = age < 120 ? `${age} s ago` : age < 7200 ? `${Math.round(age / 60)} min ago` : new Date(newest).toLocaleString();
  $("freshness-text").textContent = `newest event ${ago} · ${updated}`;
  element.title = `Newest event stored: received ${newest}`;
}

const invalidOf = (metrics) => metrics.invalid_clicks.total + metrics.invalid_impressions.total;

function render(series, report) {
  const totals = series.totals;
  for (const tile of document.querySelectorAll(".tile .value")) {
    const metric = tile.dataset.metric;
    tile.textContent =
      metric === "ctr" ? formats.ctr(totals.ctr)
      : metric === "avg_playback_time_secs" ? formats.secs(totals.avg_playback_time_secs)
      : metric === "invalid" ? `${formats.count(totals.invalid_clicks.total)} / ${formats.count(totals.invalid_impressions.total)}`
      : formats.count(totals[metric]);
  }
  const chart = (id, value, color, format, whole) =>
    drawLineChart($(id), series.series.map((b) => ({ start: b.start, value: value(b) })), {
      color,
      format,
      granularity: series.granularity,
      whole,
      multiDay: new Date(series.to) - new Date(series.from) > 86_400_000,
    });
  const style = getComputedStyle(document.documentElement);
  chart("chart-clicks", (b) => b.clicks, style.getPropertyValue("--clicks"), formats.count, true);
  chart("chart-impressions", (b) => b.impressions, style.getPropertyValue("--impressions"), formats.count, true);
  chart("chart-ctr", (b) => b.ctr, style.getPropertyValue("--ctr"), (v) => `${(v * 100).toFixed(1)}%`, false);

  // Every ad of the catalog, with zeros for those without events in the window.
  const measured = new Map(report.ads.map((entry) => [entry.ad_id, entry]));
  state.rows = [...state.ads.values()].map((ad) => {
    const m = measured.get(ad.id) || {};
    return {
      id: ad.id,
      title: ad.title,
      active: ad.active,
      campaign_id: ad.campaign_id,
      clicks: m.clicks || 0,
      unique_clicks: m.unique_clicks || 0,
      impressions: m.impressions || 0,
      unique_viewers: m.unique_viewers || 0,
      ctr: m.ctr ?? null,
      avg_playback_time_secs: m.avg_playback_time_secs ?? null,
      invalid: m.invalid_clicks ? invalidOf(m) : 0,
    };
  });
  renderTable();
}

function compareRows(a, b) {
  const [x, y] = [a[state.sortKey], b[state.sortKey]];
  // Missing values (a CTR without impressions) last, whichever the direction.
  if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1;
  const order = typeof x === "string" ? x.localeCompare(y) : x - y;
  return state.sortDescending ? -order : order;
}

function renderTable() {
  for (const th of document.querySelectorAll("#ads th[data-sort]")) {
    if (th.dataset.sort === state.sortKey) th.setAttribute("aria-sort", state.sortDescending ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
  }
  const body = document.querySelector("#ads tbody");
  body.replaceChildren();
  for (const row of [...state.rows].sort((a, b) => compareRows(a, b) || a.title.localeCompare(b.title))) {
    const tr = body.insertRow();
    tr.dataset.adId = row.id;
    tr.setAttribute("aria-selected", String(row.id === state.adId));
    const cells = [
      ["title", row.active ? row.title : `${row.title} (inactive)`],
      ["campaign_id", row.campaign_id],
      ["clicks", formats.count(row.clicks)],
      ["unique_clicks", formats.count(row.unique_clicks)],
      ["impressions", formats.count(row.impressions)],
      ["unique_viewers", formats.count(row.unique_viewers)],
      ["ctr", formats.ctr(row.ctr)],
      ["avg_playback_time_secs", formats.secs(row.avg_playback_time_secs)],
      ["invalid", formats.count(row.invalid)],
    ];
    for (const [metric, text] of cells) {
      const td = tr.insertCell();
      td.dataset.metric = metric;
      td.textContent = text;
    }
  }
}

// ---- wiring ----------------------------------------------------------------------------

function syncControls() {
  $("ad").value = state.adId;
  $("range").value = state.range;
  $("granularity").value = state.granularity;
  $("custom-range").hidden = state.range !== "custom";
  $("from").value = state.from;
  $("to").value = state.to;
}

$("ad").addEventListener("change", (e) => {
  state.adId = e.target.value;
  refreshNow();
});
$("range").addEventListener("change", (e) => {
  state.range = e.target.value;
  // Buckets chosen by hand for another range could be far too many for this one.
  state.granularity = "";
  if (state.range === "custom" && !state.from) {
    state.from = isoToLocal(new Date(Date.now() - 3.6e6));
    state.to = isoToLocal(new Date(Date.now() + 6e4));
  }
  syncControls();
  refreshNow();
});
for (const id of ["from", "to"]) {
  $(id).addEventListener("change", (e) => {
    state[id] = e.target.value;
    refreshNow();
  });
}
$("granularity").addEventListener("change", (e) => {
  state.granularity = e.target.value;
  refreshNow();
});
$("live").addEventListener("change", () => {
  if ($("live").checked) return refreshNow();
  clearTimeout(state.timer);
  $("freshness").dataset.state = "paused";
});
for (const th of document.querySelectorAll("#ads th[data-sort]")) {
  th.addEventListener("click", () => {
    state.sortDescending = state.sortKey === th.dataset.sort ? !state.sortDescending : th.dataset.sort !== "title" && th.dataset.sort !== "campaign_id";
    state.sortKey = th.dataset.sort;
    renderTable();
  });
}
document.querySelector("#ads tbody").addEventListener("click", (e) => {
  const tr = e.target.closest("tr");
  if (!tr) return;
  state.adId = state.adId === tr.dataset.adId ? "" : tr.dataset.adId;
  syncControls();
  refreshNow();
});
$("forget-key").addEventListener("click", () => {
  localStorage.removeItem(KEY_STORAGE);
  $("forget-key").hidden = true;
  refreshNow();
});
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem(KEY_STORAGE, $("key").value.trim());
  state.ads = new Map();
  refreshNow();
});

readUrl();
syncControls();
refreshNow();
