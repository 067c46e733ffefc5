// The demo player: plays an ad of the catalog (the one `?ad_id=` names, else one ingest picks
// at random) and reports it to the ingest service that served this page, as an ad player would.
// Each event gets its own event_id here, so a retry after a network error or a 503 is counted
// once.
"use strict";

// Played instead of an ad's media_url that this browser cannot play (the sample ads' are on an
// example domain, and some are images).
const SAMPLE_VIDEO = "sample-ad.webm";
const SKIP_AFTER_SECS = 5;
const MAX_ATTEMPTS = 4;

const requestedAdId = new URLSearchParams(location.search).get("ad_id");
const video = document.getElementById("ad");
const skip = document.getElementById("skip");
const ended = document.getElementById("ended");
const state = document.getElementById("state");
const sourceNote = document.getElementById("source");
const log = document.querySelector("#log tbody");

// The ad played, as ingest's ad.json describes it: { ad_id, title, media_url, active }.
let ad = null;
// What the video element was given: "ad" (the ad's media_url) or "sample".
let source = null;

function newEventId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Pages served over plain http to another host are not a secure context: no randomUUID.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function logRow(kind, eventId) {
  const row = log.insertRow(0);
  row.dataset.kind = kind;
  row.dataset.eventId = eventId;
  for (const text of [new Date().toLocaleTimeString(), kind, "sending…", `${eventId.slice(0, 13)}…`]) {
    row.insertCell().textContent = text;
  }
  row.cells[3].title = eventId;
  return (answer) => {
    row.cells[2].textContent = answer;
    row.cells[2].className = `status-${answer}`;
    row.dataset.status = answer;
  };
}

// POSTs one event (`kind` is "click" or "impression") until ingest stores it or refuses it.
async function report(kind, fields) {
  const event = { event_id: newEventId(), ad_id: ad.ad_id, ...fields };
  const show = logRow(kind, event.event_id);
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    let response;
    try {
      // keepalive: the request outlives the page if the viewer navigates away meanwhile.
      response = await fetch(`../ads/${kind}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(event),
        keepalive: true,
      });
    } catch (error) {
      show(`network error, retrying (${attempt})`);
      await sleep(1000 * attempt);
      continue;
    }
    const answer = await response.json().catch(() => ({}));
    if (response.status === 202) {
      show(answer.status || "accepted");
      return;
    }
    if (response.status === 503 || response.status === 429) {
      // Not stored (or not known to be): the same event_id again is counted once.
      const wait = Number(response.headers.get("retry-after")) || attempt;
      show(`${response.status}, retrying in ${wait} s`);
      await sleep(wait * 1000);
      continue;
    }
    show(`${response.status}: ${answer.detail || response.statusText}`);
    return;
  }
  show("gave up: not stored");
}

// One showing of the ad: an impression when it starts playing, then any number of clicks.
let impressionSent = false;

video.addEventListener("playing", () => {
  state.textContent = "Playing. Click the video to learn more.";
  video.dataset.source = source;
  sourceNote.textContent = source === "ad"
    ? `Playing the ad's own video, ${ad.media_url}.`
    : `Playing the sample video: ${ad.media_url ? `${ad.media_url} cannot be played here` : "the ad has no media_url"}.`;
  sourceNote.hidden = false;
  if (!impressionSent) {
    impressionSent = true;
    report("impression", {});
  }
});

video.addEventListener("click", () => {
  // A click on the ad while it plays; not one that starts it, nor one on a paused frame.
  if (!impressionSent || video.paused) return;
  const watched = video.duration ? Math.min(100, (100 * video.currentTime) / video.duration) : undefined;
  report("click", {
    playback_time_secs: Math.round(video.currentTime * 10) / 10,
    ...(watched === undefined ? {} : { watched_percent: Math.round(watched * 10) / 10 }),
  });
  state.textContent = "Click recorded. A real player would now open the advertiser's page.";
});

video.addEventListener("timeupdate", () => {
  document.getElementById("progress").style.width = `${video.duration ? (100 * video.currentTime) / video.duration : 0}%`;
  const left = Math.ceil(SKIP_AFTER_SECS - video.currentTime);
  skip.disabled = left > 0;
  skip.textContent = left > 0 ? `Skip in ${left}` : "Skip ad ▸▏";
});

function finish(text) {
  video.pause();
  ended.hidden = false;
  document.getElementById("ended-text").textContent = text;
  state.textContent = text;
}

video.addEventListener("ended", () => finish("Ad finished"));
skip.addEventListener("click", () => finish(`Ad skipped after ${video.currentTime.toFixed(1)} s`));

document.getElementById("replay").addEventListener("click", () => {
  ended.hidden = true;
  impressionSent = false;
  video.currentTime = 0;
  video.play();
});

function showError(text) {
  state.textContent = text;
  state.className = "small error";
}

video.addEventListener("error", () => {
  if (source === "ad") {
    playFrom("sample", SAMPLE_VIDEO);
    return;
  }
  showError("The sample video could not be played by this browser.");
});

function playFrom(kind, url) {
  source = kind;
  video.src = url;
  // Autoplay may be refused (a browser setting): then the viewer starts the ad with a button of
  // the page's own, so that no click on the video is mistaken for a click on the ad. A source
  // that cannot play rejects too; the error event handles that.
  video.play().catch((error) => {
    if (error.name !== "NotAllowedError") return;
    state.textContent = "Press play to start the ad.";
    document.getElementById("start").hidden = false;
  });
}

document.getElementById("play").addEventListener("click", () => {
  document.getElementById("start").hidden = true;
  video.play();
});

function isHttpUrl(text) {
  try {
    return ["http:", "https:"].includes(new URL(text).protocol);
  } catch {
    return false;
  }
}

async function loadAd() {
  const query = requestedAdId ? `?ad_id=${encodeURIComponent(requestedAdId)}` : "";
  let response, answer;
  try {
    response = await fetch(`ad.json${query}`);
    answer = await response.json();
  } catch (error) {
    showError(`The ad could not be loaded: ${error.message}`);
    return;
  }
  if (!response.ok) {
    showError(answer.detail || `${response.status} ${response.statusText}`);
    return;
  }
  ad = answer;
  document.getElementById("ad-id").textContent = ad.ad_id;
  document.getElementById("ad-title").textContent = ad.active ? ad.title : `${ad.title} (inactive: ingest refuses its events)`;
  video.setAttribute("aria-label", `${ad.title}: click to visit the advertiser`);
  if (isHttpUrl(ad.media_url)) playFrom("ad", ad.media_url);
  else playFrom("sample", SAMPLE_VIDEO);
}

loadAd();
