"""Generates a Python SDK from the published spec with openapi-python-client, then drives every
operation of both services through it and checks the answers.

usage: client_roundtrip.py OPENAPI_YAML INGEST_URL QUERY_URL WORK_DIR API_KEY

The services must be freshly started (no events yet): the analytics counts are checked exactly.
The query service runs with API_KEY (so that ads can be created, changed and deactivated).
"""

import datetime
import importlib
import inspect
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 (contract test)"}

TRAIL_RUNNER = uuid.UUID("a1000000-0000-4000-8000-000000000001")
CITY_BREAK = uuid.UUID("a1000000-0000-4000-8000-000000000003")
INACTIVE = uuid.UUID("a1000000-0000-4000-8000-000000000004")
SEEDED_ADS = 4

# Warnings the generator may print for this spec, each with the reason it is acceptable.
KNOWN_WARNINGS = {
    # It generates the JSON-array form of POST /ads/events; NDJSON is the other accepted body.
    "WARNING parsing POST /ads/events within events.": r"Unsupported content type application/x-ndjson",
    # The pixel's answer is a GIF, which it leaves unparsed; the call and its status are there.
    "WARNING parsing GET /i/{file} within tracking.": r"Unsupported content_type image/gif",
}

operations_called = set()


def generate(spec, work):
    out = work / "adtrack_client"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    generator = Path(sys.executable).parent / "openapi-python-client"
    run = subprocess.run(
        [str(generator), "generate", "--path", str(spec), "--output-path", str(out), "--meta", "none", "--overwrite"],
        capture_output=True, text=True, env=env,
    )
    output = run.stdout + run.stderr
    if run.returncode != 0:
        sys.exit(f"openapi-python-client failed ({run.returncode}):\n{output}")
    # Every WARNING must be a known one: anything else means part of the API was not generated.
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("WARNING") or line.startswith("ERROR"):
            reason = KNOWN_WARNINGS.get(line.strip())
            following = "\n".join(lines[i + 1:i + 4])
            if reason is None or not re.search(reason, following):
                sys.exit(f"openapi-python-client could not generate part of the API: {line}\n{output}")
            print(f"generator: {line} ({reason}: expected)")
    sys.path.insert(0, str(work))
    return importlib.import_module("adtrack_client")


def call(module, client, **kwargs):
    """Calls an operation's `sync_detailed`; notes it as covered."""
    operations_called.add(module.__name__.rsplit(".", 1)[1])
    return module.sync_detailed(client=client, **kwargs)


def expect(response, status, what):
    if response.status_code != status:
        sys.exit(f"{what}: expected {status}, got {response.status_code}: {response.content[:500]!r}")
    if response.parsed is None:
        sys.exit(f"{what}: the generated client did not parse the {status} answer: {response.content[:500]!r}")
    print(f"ok  {what}: {status}")
    return response.parsed


def check(condition, what, detail=""):
    if not condition:
        sys.exit(f"{what}: {detail}")


def main():
    spec, ingest_url, query_url, work, api_key = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]), sys.argv[5]
    work.mkdir(parents=True, exist_ok=True)
    sdk = generate(spec, work)
    from adtrack_client import AuthenticatedClient, Client
    from adtrack_client.api.ads import create_ad, deactivate_ad, get_ad, list_ads, update_ad
    from adtrack_client.api.analytics import get_ad_analytics, get_ads_analytics, get_breakdown, get_series
    from adtrack_client.api.events import post_click, post_events, post_impression
    from adtrack_client.api.tracking import track_click, track_impression
    from adtrack_client import models

    # Undocumented status codes raise errors.UnexpectedStatus. Ingest hears a browser: its own
    # user agent (python-httpx) is a known bot's, whose events would be invalid traffic.
    ingest = Client(base_url=ingest_url, headers=BROWSER, raise_on_unexpected_status=True, timeout=30)
    query = AuthenticatedClient(base_url=query_url, token=api_key, raise_on_unexpected_status=True, timeout=30)
    anonymous = Client(base_url=query_url, raise_on_unexpected_status=True, timeout=30)
    print(f"generated {sdk.__name__}; ingest {ingest_url}, query {query_url}")

    # --- the catalog
    expect(call(list_ads, anonymous, page=1, limit=3), 401, "listAds without the API key")
    page = expect(call(list_ads, query, page=1, limit=3), 200, "listAds page 1")
    check(page.pagination.total == SEEDED_ADS, "listAds total", page.pagination.to_dict())
    check(page.pagination.total_pages == 2 and len(page.ads) == 3, "listAds page 1 size", page.pagination.to_dict())
    rest = expect(call(list_ads, query, page=2, limit=3), 200, "listAds page 2")
    ids = [ad.id for ad in page.ads + rest.ads]
    check(sorted(ids) == sorted({TRAIL_RUNNER, CITY_BREAK, INACTIVE, uuid.UUID("a1000000-0000-4000-8000-000000000002")}),
          "listAds pages hold every seeded ad once", ids)
    expect(call(list_ads, query, page=1, limit=1000), 400, "listAds limit over 100")

    ad = expect(call(get_ad, query, ad_id=TRAIL_RUNNER), 200, "getAd")
    check(ad.id == TRAIL_RUNNER and ad.active is True and ad.title, "getAd body", ad.to_dict())
    inactive = expect(call(get_ad, query, ad_id=INACTIVE), 200, "getAd inactive")
    check(inactive.active is False, "getAd inactive ad", inactive.to_dict())
    expect(call(get_ad, query, ad_id=uuid.uuid4()), 404, "getAd unknown ad")

    # --- events, on an ad nothing else touches, so the counts below are exact
    click_id = uuid.uuid4()
    accepted = expect(call(post_click, ingest, body=models.ClickRequest(
        ad_id=CITY_BREAK, event_id=click_id, playback_time_secs=12.5, watched_percent=40.0)), 202, "postClick")
    check(accepted.event_id == click_id and accepted.status == models.AcceptStatus.ACCEPTED, "postClick body", accepted.to_dict())
    again = expect(call(post_click, ingest, body=models.ClickRequest(ad_id=CITY_BREAK, event_id=click_id)), 202,
                   "postClick retry with the same event_id")
    check(again.event_id == click_id, "postClick retry body", again.to_dict())
    impression = expect(call(post_impression, ingest, body=models.ImpressionRequest(ad_id=CITY_BREAK)), 202, "postImpression")
    check(impression.status == models.AcceptStatus.ACCEPTED and impression.event_id.version == 7,
          "postImpression assigns a UUIDv7", impression.to_dict())
    expect(call(post_click, ingest, body=models.ClickRequest(ad_id=INACTIVE)), 422, "postClick inactive ad")
    expect(call(post_impression, ingest, body=models.ImpressionRequest(ad_id=uuid.uuid4())), 422, "postImpression unknown ad")
    expect(call(post_click, ingest, body=models.ClickRequest(ad_id=CITY_BREAK, watched_percent=101.0)), 422,
           "postClick watched_percent over 100")

    batch = expect(call(post_events, ingest, body=[
        models.BatchEventClickRequest(type_=models.BatchEventClickRequestType.CLICK, ad_id=CITY_BREAK, playback_time_secs=3.0),
        models.BatchEventImpressionRequest(type_=models.BatchEventImpressionRequestType.IMPRESSION, ad_id=CITY_BREAK),
        models.BatchEventClickRequest(type_=models.BatchEventClickRequestType.CLICK, ad_id=INACTIVE),
    ]), 207, "postEvents with one inactive ad")
    statuses = [str(r.status) for r in batch.results]
    check(statuses == ["accepted", "accepted", "rejected"], "postEvents results", batch.to_dict())
    check((batch.accepted, batch.duplicates, batch.rejected, batch.unavailable) == (2, 0, 1, 0), "postEvents counts", batch.to_dict())
    check(batch.results[2].field == "ad_id", "postEvents names the rejected field", batch.to_dict())
    all_ok = expect(call(post_events, ingest, body=[
        models.BatchEventImpressionRequest(type_=models.BatchEventImpressionRequestType.IMPRESSION, ad_id=TRAIL_RUNNER),
    ]), 202, "postEvents all stored")
    check(all_ok.accepted == 1 and str(all_ok.results[0].status) == "accepted", "postEvents 202 body", all_ok.to_dict())

    # --- analytics: 2 clicks (one sent twice), 2 impressions on CITY_BREAK, from one visitor
    expected = {"clicks": 2, "impressions": 2, "unique_clicks": 1}
    deadline = time.monotonic() + 60
    while True:
        report = expect(call(get_ads_analytics, query, ad_id=CITY_BREAK, timeframe=models.Timeframe("1h")), 200,
                        "getAdsAnalytics for one ad")
        rows = [row for row in report.ads if row.ad_id == CITY_BREAK]
        got = {k: getattr(rows[0], k) for k in expected} if rows else None
        if got == expected:
            break
        if time.monotonic() > deadline:
            sys.exit(f"getAdsAnalytics never counted {expected}; last {report.to_dict()}")
        time.sleep(0.5)
    row = rows[0]
    check(abs(row.ctr - 1.0) < 1e-9, "ctr = clicks / impressions", row.to_dict())
    check(abs(row.avg_playback_time_secs - 7.75) < 1e-9, "avg_playback_time_secs over the clicks that reported one", row.to_dict())
    check(report.from_ < report.to, "window", report.to_dict())

    everyone = expect(call(get_ads_analytics, query, timeframe=models.Timeframe("24h")), 200, "getAdsAnalytics for every ad")
    by_ad = {r.ad_id: r for r in everyone.ads}
    check(by_ad.get(CITY_BREAK) is not None and by_ad[CITY_BREAK].clicks == 2, "every ad's report holds CITY_BREAK", everyone.to_dict())
    check(by_ad.get(TRAIL_RUNNER) is not None and by_ad[TRAIL_RUNNER].impressions == 1, "every ad's report holds TRAIL_RUNNER",
          everyone.to_dict())

    # Optional parameters, when the spec has them: a ranking, and the previous period.
    if "sort" in inspect.signature(get_ads_analytics.sync_detailed).parameters:
        top = expect(call(get_ads_analytics, query, timeframe=models.Timeframe("1h"), sort=models.Metric("clicks"), limit=1), 200,
                     "getAdsAnalytics top ad by clicks")
        check([r.ad_id for r in top.ads] == [CITY_BREAK], "getAdsAnalytics sort=clicks limit=1", top.to_dict())
    if "compare" in inspect.signature(get_ad_analytics.sync_detailed).parameters:
        compared = expect(call(get_ad_analytics, query, ad_id=CITY_BREAK, timeframe=models.Timeframe("1h"),
                               compare=models.Compare("previous")), 200, "getAdAnalytics compare=previous")
        previous = compared.to_dict().get("previous")
        check(isinstance(previous, dict) and previous.get("totals", {}).get("clicks") == 0
              and compared.totals.clicks == 2, "getAdAnalytics previous period (the hour before: no events)", compared.to_dict())

    series = expect(call(get_ad_analytics, query, ad_id=CITY_BREAK, timeframe=models.Timeframe("1h"),
                         granularity=models.Granularity.MINUTE), 200, "getAdAnalytics by minute")
    check(series.ad_id == CITY_BREAK and str(series.granularity) == "minute", "getAdAnalytics echo", series.to_dict())
    check((series.totals.clicks, series.totals.impressions, series.totals.unique_clicks) == (2, 2, 1), "getAdAnalytics totals",
          series.totals.to_dict())
    check(sum(b.clicks for b in series.series) == 2 and sum(b.impressions for b in series.series) == 2,
          "getAdAnalytics buckets add up to the totals", series.to_dict())
    check(60 <= len(series.series) <= 62, "an hour of minute buckets", len(series.series))

    # Every ad together: the report's total, bucket by bucket.
    hour = expect(call(get_ads_analytics, query, timeframe=models.Timeframe("1h")), 200, "getAdsAnalytics for the hour")
    together = expect(call(get_series, query, timeframe=models.Timeframe("1h"), granularity=models.Granularity.MINUTE), 200,
                      "getSeries by minute")
    check((together.totals.clicks, together.totals.impressions) == (hour.total.clicks, hour.total.impressions)
          and together.totals.impressions > series.totals.impressions, "getSeries totals are every ad's", together.to_dict())
    check(sum(b.impressions for b in together.series) == together.totals.impressions, "getSeries buckets add up", together.to_dict())
    expect(call(get_series, query, granularity=models.Granularity.MINUTE,
                from_=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)), 422, "getSeries too many buckets")

    expect(call(get_ad_analytics, query, ad_id=uuid.uuid4(), timeframe=models.Timeframe("1h")), 404, "getAdAnalytics unknown ad")
    expect(call(get_ads_analytics, query, ad_id=uuid.uuid4(), timeframe=models.Timeframe("1h")), 404, "getAdsAnalytics unknown ad")
    expect(call(get_ads_analytics, query, timeframe=models.Timeframe("1h"),
                from_=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)), 422, "getAdsAnalytics timeframe with from")
    expect(call(get_ad_analytics, query, ad_id=CITY_BREAK, granularity=models.Granularity.MINUTE,
                from_=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)), 422, "getAdAnalytics too many buckets")

    # --- breakdowns: CITY_BREAK is the only ad of campaign autumn-travel
    breakdown = expect(call(get_breakdown, query, by=models.Dimension("campaign"), timeframe=models.Timeframe("1h")), 200,
                       "getBreakdown by campaign")
    groups = {g.value: g for g in breakdown.groups}
    travel = groups.get("autumn-travel")
    check(travel is not None and (travel.clicks, travel.impressions, travel.unique_clicks) == (2, 2, 1),
          "getBreakdown counts CITY_BREAK's events under its campaign", breakdown.to_dict())

    # --- ads management
    created = expect(call(create_ad, query, body=models.NewAd(
        title="Winter boots", media_url="https://cdn.example.com/boots.mp4", target_url="https://shop.example.com/boots",
        campaign_id="winter")), 201, "createAd")
    check(created.active is True and created.campaign_id == "winter", "createAd body", created.to_dict())
    changed = expect(call(update_ad, query, ad_id=created.id, body=models.AdChanges(title="Snow boots")), 200, "updateAd")
    check(changed.title == "Snow boots" and changed.target_url == created.target_url, "updateAd changes only the title",
          changed.to_dict())
    expect(call(update_ad, query, ad_id=uuid.uuid4(), body=models.AdChanges(title="x")), 404, "updateAd unknown ad")
    off = expect(call(deactivate_ad, query, ad_id=created.id), 200, "deactivateAd")
    check(off.active is False, "deactivateAd body", off.to_dict())
    expect(call(create_ad, query, body=models.NewAd(
        id=TRAIL_RUNNER, title="Copy", media_url="https://cdn.example.com/x.mp4", target_url="https://shop.example.com/x",
        campaign_id="copy")), 409, "createAd with an existing id")

    # --- tracking links and pixels (after the exact counts above)
    redirect = call(track_click, ingest, ad_id=TRAIL_RUNNER, click_id="sdk-1")
    landing = "https://shop.example.com/trail-runner-3?click_id=sdk-1"
    check(redirect.status_code == 302 and redirect.headers.get("location") == landing, "trackClick redirects to the ad's page",
          f"{redirect.status_code} {dict(redirect.headers)}")
    print("ok  trackClick: 302")
    expect(call(track_click, ingest, ad_id=uuid.uuid4()), 404, "trackClick unknown ad")
    # The generator leaves the GIF answer out (see KNOWN_WARNINGS), so 200 is "unexpected" to it.
    lenient = Client(base_url=ingest_url, headers=BROWSER, raise_on_unexpected_status=False, timeout=30)
    pixel = call(track_impression, lenient, file=f"{TRAIL_RUNNER}.gif")
    check(pixel.status_code == 200 and pixel.content[:6] == b"GIF89a", "trackImpression answers the pixel",
          f"{pixel.status_code} {pixel.content[:20]!r}")
    print("ok  trackImpression: 200")

    # Every operation the SDK has was driven.
    generated = {p.stem for p in (work / "adtrack_client" / "api").rglob("*.py") if p.stem != "__init__"}
    missing = generated - operations_called
    check(not missing, "operations of the generated client not exercised", sorted(missing))
    print(f"all {len(generated)} operations driven through the generated client: {', '.join(sorted(generated))}")


if __name__ == "__main__":
    main()
