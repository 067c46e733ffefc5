"""Loads each service's Swagger UI (`/docs`) in headless Chromium and executes one request
through it as a person would: open the operation, "Try it out", fill the parameters or the body,
"Execute", and read the status code Swagger UI shows.

usage: swagger_ui.py INGEST_URL QUERY_URL SCREENSHOT_DIR

Chromium: see tests/browser/chromium.py (on PYTHONPATH, set by tests/tests/contract.rs).
"""

import json
import sys
import uuid
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from chromium import BROWSER_USER_AGENT, launch

TRAIL_RUNNER = "a1000000-0000-4000-8000-000000000001"
TIMEOUT_MS = 30_000


def try_it_out(page, base_url, tag, operation_id, fill, expected_status, shots, name):
    page.goto(f"{base_url}/docs", wait_until="load")
    block = page.locator(f"#operations-{tag}-{operation_id}")
    expect(block, f"{operation_id} listed in Swagger UI").to_be_visible(timeout=TIMEOUT_MS)
    block.locator(".opblock-summary").first.click()
    block.get_by_role("button", name="Try it out").click()
    fill(block)
    block.get_by_role("button", name="Execute").click()
    status = block.locator(".live-responses-table .response .response-col_status").first
    expect(status, f"{operation_id}: a response shown").to_be_visible(timeout=TIMEOUT_MS)
    shown = status.inner_text().strip()
    body = block.locator(".live-responses-table .response-col_description pre").first.inner_text()
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    if shown != str(expected_status):
        sys.exit(f"{name}: Swagger UI shows {shown!r}, expected {expected_status}; body: {body[:500]}")
    print(f"ok  {name}: Swagger UI executed {operation_id} and shows {shown}")
    return body


def main():
    ingest_url, query_url, shots = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/"), Path(sys.argv[3])
    shots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = launch(p)
        # A browser's user agent: the click sent through Try it out must be counted.
        page = browser.new_page(viewport={"width": 1280, "height": 2000}, user_agent=BROWSER_USER_AGENT)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(TIMEOUT_MS)

        # query: GET /ads/{ad_id}, a path parameter typed in.
        def fill_ad_id(block):
            block.locator("tr[data-param-name='ad_id'] input").fill(TRAIL_RUNNER)

        body = try_it_out(page, query_url, "Ads", "getAd", fill_ad_id, 200, shots, "query-getAd")
        if TRAIL_RUNNER not in body:
            sys.exit(f"query-getAd: the response shown is not the ad: {body[:500]}")

        # ingest: POST /ads/click, a JSON body typed into the request-body editor.
        event_id = str(uuid.uuid4())

        def fill_click(block):
            block.locator("textarea.body-param__text").fill(json.dumps({"ad_id": TRAIL_RUNNER, "event_id": event_id}))

        body = try_it_out(page, ingest_url, "Events", "postClick", fill_click, 202, shots, "ingest-postClick")
        if event_id not in body:
            sys.exit(f"ingest-postClick: the response shown does not echo the event_id: {body[:500]}")

        browser.close()
        if errors:
            sys.exit("JavaScript errors on the page:\n" + "\n".join(errors))


if __name__ == "__main__":
    main()
