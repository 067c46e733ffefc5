// The demo player: plays the sample ad and reports it to the ingest service that served this
// page, as an ad player would. Each event gets its own event_id here, so a retry after a
// network error or a 503 is counted once.
"use strict";

// The first sample ad of clickhouse/seed.sql.
const DEFAULT_AD_ID = "a1000000-0000-4000-8000-000000000001";
const SKIP_AFTER_SECS = 5;
const MAX_ATTEMPTS = 4;

const adId = new URLSearchParams(location.search).get("ad_id") || DEFAULT_AD_ID;
const video = document.getElementById("ad");
const skip = document.getElementById("skip");
const ended = document.getElementById("ended");
const state = document.getElementById("state");
const log = document.querySelector("#log tbody");

document.getElementById("ad-id").textContent = adId;

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
  const event = { event_id: newEventId(), ad_id: adId, ...fields };
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

video.addEventListener("error", () => {
  state.textContent = "The sample video could not be played by this browser.";
  state.className = "small error";
});

// Autoplay may be refused (a browser setting): then the viewer starts the ad with a button of
// the page's own, so that no click on the video is mistaken for a click on the ad.
video.play().catch(() => {
  state.textContent = "Press play to start the ad.";
  document.getElementById("start").hidden = false;
});
document.getElementById("play").addEventListener("click", () => {
  document.getElementById("start").hidden = true;
  video.play();
});
