"""The demo player and the dashboard in a real browser (headless Chromium, driven by
Playwright), against a running stack: a click on the ad in the demo page raises that ad's count
on the dashboard, which refreshes by itself. The demo plays an ad's own media_url when it can
(PLAYABLE_AD_ID's does), else the sample video, and without ?ad_id= an active ad picked at
random. Screenshots of both pages go to SCREENSHOT_DIR.

usage: demo_dashboard.py INGEST_URL QUERY_URL SCREENSHOT_DIR PLAYABLE_AD_ID [API_KEY]

Chromium: see chromium.py.
"""

import re
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from chromium import BROWSER_USER_AGENT, launch

# The sample ads of clickhouse/seed.sql; their media_urls are on cdn.example.com, which the
# test's browser cannot reach.
TRAIL_RUNNER = "a1000000-0000-4000-8000-000000000001"
TRAIL_RUNNER_MEDIA = "https://cdn.example.com/ads/trail-runner-3.mp4"
COFFEE_CLUB = "a1000000-0000-4000-8000-000000000002"
CITY_BREAK = "a1000000-0000-4000-8000-000000000003"
TIMEOUT_MS = 30_000


def count(locator):
    """The integer a tile or a cell shows ("1,234" -> 1234)."""
    text = locator.inner_text().strip()
    digits = re.sub(r"[^0-9]", "", text)
    if not digits:
        sys.exit(f"expected a count, the page shows {text!r}")
    return int(digits)


def step(text):
    print(f"ok  {text}", flush=True)


def main():
    ingest_url, query_url, shots = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/"), Path(sys.argv[3])
    playable_ad = sys.argv[4]
    api_key = sys.argv[5] if len(sys.argv) > 5 else None
    shots.mkdir(parents=True, exist_ok=True)
    # A failed run must not leave an earlier run's pictures looking like its own.
    for name in ("demo.png", "dashboard.png"):
        (shots / name).unlink(missing_ok=True)

    with sync_playwright() as p:
        # The sample ad autoplays muted, as players do; no user gesture in a test.
        browser = launch(p, ["--autoplay-policy=no-user-gesture-required"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, user_agent=BROWSER_USER_AGENT)
        context.set_default_timeout(TIMEOUT_MS)
        errors = []
        context.on("weberror", lambda e: errors.append(str(e.error)))

        # The dashboard, on one ad, before anything happens.
        dashboard = context.new_page()
        dashboard.goto(f"{query_url}/dashboard/?ad_id={TRAIL_RUNNER}&range=1h")
        if api_key:
            form = dashboard.locator("#key-form")
            expect(form, "the dashboard asks for the API key").to_be_visible()
            form.locator("#key").fill(api_key)
            form.get_by_role("button", name="Use key").click()
            expect(form).to_be_hidden()
            step("the dashboard asked for the API key and uses it")
        clicks_tile = dashboard.locator(".tile [data-metric=clicks]")
        expect(clicks_tile).to_have_text(re.compile(r"^\d[\d,.\s]*$"))
        expect(dashboard.locator("#freshness")).to_have_attribute("data-state", "live")
        row = dashboard.locator(f"#ads tbody tr[data-ad-id='{TRAIL_RUNNER}']")
        expect(row, "the ad listed in the table").to_be_visible()
        expect(row).to_have_attribute("aria-selected", "true")
        before_clicks, before_impressions = count(clicks_tile), count(dashboard.locator(".tile [data-metric=impressions]"))
        step(f"dashboard shows the ad: {before_clicks} clicks, {before_impressions} impressions")

        # The demo: the ad plays (an impression), then a viewer clicks it. Its media_url cannot
        # be reached, so the sample video stands in, and the page says so.
        demo = context.new_page()
        demo.goto(f"{ingest_url}/demo/?ad_id={TRAIL_RUNNER}")
        expect(demo.locator("#ad-id")).to_have_text(TRAIL_RUNNER)
        expect(demo.locator("#ad-title")).to_have_text("Trail Runner 3")
        expect(demo.locator("#log tr[data-kind=impression]"), "the impression stored").to_have_attribute("data-status", "accepted")
        step("the demo sent the impression when the ad started playing: accepted")
        expect(demo.locator("#ad"), "the sample video stands in").to_have_attribute("data-source", "sample")
        played = demo.evaluate("document.getElementById('ad').currentSrc")
        if played != f"{ingest_url}/demo/sample-ad.webm":
            sys.exit(f"the ad's media_url cannot be reached, so the sample should play; the video plays {played!r}")
        expect(demo.locator("#source")).to_have_text(f"Playing the sample video: {TRAIL_RUNNER_MEDIA} cannot be played here.")
        step("the ad's unreachable media_url gave way to the sample video, and the page says so")
        demo.wait_for_function("document.getElementById('ad').currentTime > 1.5")
        demo.locator("#ad").click()
        expect(demo.locator("#log tr[data-kind=click]"), "the click stored").to_have_attribute("data-status", "accepted")
        step("a click on the ad was sent: accepted")
        demo.screenshot(path=str(shots / "demo.png"))

        # Skip, once the ad allows it (after 5 s of the 10 s ad), then see it ended.
        skip = demo.locator("#skip")
        expect(skip).to_be_enabled(timeout=15_000)
        skip.click()
        expect(demo.locator("#ended")).to_be_visible()
        expect(demo.locator("#ended-text")).to_contain_text("skipped")
        step("the skip button ends the ad")

        # The dashboard catches up by itself (live polling, no reload).
        expect(clicks_tile, "the dashboard's click count rises").to_have_text(str(before_clicks + 1), timeout=60_000)
        expect(dashboard.locator(".tile [data-metric=impressions]")).to_have_text(str(before_impressions + 1))
        expect(row.locator("td[data-metric=clicks]")).to_have_text(str(before_clicks + 1))
        expect(dashboard.locator(".tile [data-metric=avg_playback_time_secs]")).to_have_text(re.compile(r"^\d+\.\d s$"))
        expect(dashboard.locator("#freshness-text")).to_contain_text("newest event")
        # The clicks chart's line rises above zero somewhere: y grows downwards in SVG.
        line = dashboard.locator("#chart-clicks path.line").get_attribute("d") or ""
        heights = [float(y) for y in re.findall(r"[ML][\d.]+,([\d.]+)", line)]
        if not heights or min(heights) >= max(heights):
            sys.exit(f"the clicks chart shows no click: its line is {line!r}")
        step(f"without a reload, the dashboard shows {before_clicks + 1} clicks and {before_impressions + 1} impressions")

        # An ad whose media_url plays: its own video, not the sample.
        own = context.new_page()
        own.goto(f"{ingest_url}/demo/?ad_id={playable_ad}")
        expect(own.locator("#log tr[data-kind=impression]"), "its impression stored").to_have_attribute("data-status", "accepted")
        expect(own.locator("#ad"), "the ad's own video plays").to_have_attribute("data-source", "ad")
        own_media = f"{ingest_url}/demo/sample-ad.webm?own=1"
        played = own.evaluate("document.getElementById('ad').currentSrc")
        if played != own_media:
            sys.exit(f"the ad's own video {own_media!r} should play; the video plays {played!r}")
        expect(own.locator("#source")).to_have_text(f"Playing the ad's own video, {own_media}.")
        own.close()
        step("an ad whose media_url plays is played from it: accepted")

        # No ?ad_id=: an active ad picked at random, as an ad server would.
        picked = context.new_page()
        picked.goto(f"{ingest_url}/demo/")
        expect(picked.locator("#log tr[data-kind=impression]"), "its impression stored").to_have_attribute("data-status", "accepted")
        picked_ad = picked.locator("#ad-id").inner_text()
        active = {TRAIL_RUNNER, COFFEE_CLUB, CITY_BREAK, playable_ad}
        if picked_ad not in active:
            sys.exit(f"without ?ad_id= the demo should play one of the active ads {sorted(active)}, not {picked_ad!r}")
        picked.close()
        step(f"without ?ad_id=, the demo played the active ad {picked_ad}: accepted")

        # An ad_id ingest refuses: its problem shown, nothing played.
        unknown = context.new_page()
        unknown.goto(f"{ingest_url}/demo/?ad_id=not-an-ad")
        expect(unknown.locator("#state")).to_contain_text("ad_id: not a UUID")
        if unknown.evaluate("document.getElementById('ad').currentSrc"):
            sys.exit("the demo plays a video for an ad_id ingest refused")
        unknown.close()
        step("a malformed ?ad_id= shows ingest's problem and plays nothing")

        # Every ad: another ad's impression too, and the tiles are the table's sums.
        answer = context.request.post(f"{ingest_url}/ads/impression", data={"ad_id": COFFEE_CLUB},
                                      headers={"user-agent": BROWSER_USER_AGENT})
        if answer.status != 202:
            sys.exit(f"an impression for another ad: {answer.status} {answer.text()}")
        dashboard.locator("#ad").select_option("")
        expect(dashboard.locator("#ads tbody tr[aria-selected=true]")).to_have_count(0)
        # Through the aggregator and the next poll, as above: seconds, not the default 5.
        expect(dashboard.locator(f"#ads tbody tr[data-ad-id='{COFFEE_CLUB}'] td[data-metric=impressions]")).not_to_have_text("0", timeout=60_000)
        single_ad_impressions = before_impressions + 1
        dashboard.wait_for_function(
            """([more]) => {
                const number = (e) => Number(e.textContent.replace(/[^0-9]/g, ""));
                const sum = (metric) => [...document.querySelectorAll(`#ads tbody td[data-metric=${metric}]`)].map(number).reduce((a, b) => a + b, 0);
                const tile = (metric) => number(document.querySelector(`.tile [data-metric=${metric}]`));
                return tile("impressions") > more && tile("impressions") === sum("impressions") && tile("clicks") === sum("clicks");
            }""",
            arg=[single_ad_impressions],
        )
        step(f"all ads: {count(dashboard.locator('.tile [data-metric=impressions]'))} impressions and "
             f"{count(clicks_tile)} clicks, the table's sums")
        header = dashboard.locator("#ads th[data-sort=impressions]")
        header.click()
        expect(header).to_have_attribute("aria-sort", "descending")
        impressions = [count(c) for c in dashboard.locator("#ads tbody td[data-metric=impressions]").all()]
        if impressions != sorted(impressions, reverse=True):
            sys.exit(f"sorted by impressions, highest first, the table shows {impressions}")
        header.click()
        expect(header).to_have_attribute("aria-sort", "ascending")
        impressions = [count(c) for c in dashboard.locator("#ads tbody td[data-metric=impressions]").all()]
        if impressions != sorted(impressions):
            sys.exit(f"sorted by impressions, lowest first, the table shows {impressions}")
        step("the table sorts by impressions both ways")
        header.click()
        dashboard.screenshot(path=str(shots / "dashboard.png"), full_page=True)

        browser.close()
        if errors:
            sys.exit("JavaScript errors on the pages:\n" + "\n".join(errors))
        step(f"screenshots in {shots}")


if __name__ == "__main__":
    main()
