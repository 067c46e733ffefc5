/**
 * Drives every operation of both services through a TypeScript SDK generated from openapi.yaml:
 * types by openapi-typescript (into generated/api.d.ts), requests by openapi-fetch. tsc checks
 * this file against those types before it runs, so an operation, parameter or field renamed in
 * the spec fails the test even where no request would notice.
 *
 * usage: node roundtrip.js INGEST_URL QUERY_URL API_KEY
 *
 * The services must be freshly started (no events yet): the analytics counts are checked exactly.
 * The query service runs with API_KEY (so that ads can be created, changed and deactivated).
 */

import { randomUUID } from "node:crypto";
import createClient, { type Middleware } from "openapi-fetch";
import type { components, operations, paths } from "./generated/api";

type Schemas = components["schemas"];
type BatchEvent = Schemas["BatchEvent"];
type Problem = Schemas["Problem"];

// Ingest hears a browser, as from the pages that send events: its bot list names HTTP libraries
// (`undici`, `node-fetch`), and the events it flags are in none of the counts checked here.
const BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 (contract test)";

const TRAIL_RUNNER = "a1000000-0000-4000-8000-000000000001";
const COFFEE_CLUB = "a1000000-0000-4000-8000-000000000002";
const CITY_BREAK = "a1000000-0000-4000-8000-000000000003";
const INACTIVE = "a1000000-0000-4000-8000-000000000004";
const SEEDED_ADS = 4;

const REQUEST_TIMEOUT_MS = 30_000;
const COUNTED_WITHIN_MS = 60_000;

type HttpMethod = "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace";
/** `METHOD /path` of each operation in the spec. */
type Route = {
  [P in keyof paths]: {
    [M in HttpMethod & keyof paths[P]]: paths[P][M] extends undefined ? never : `${Uppercase<M>} ${P}`;
  }[HttpMethod & keyof paths[P]];
}[keyof paths];

/** Every operation of the spec by its operationId: tsc fails when one is added, removed or renamed. */
const ROUTES: Record<keyof operations, Route> = {
  listAds: "GET /ads",
  createAd: "POST /ads",
  getAd: "GET /ads/{ad_id}",
  updateAd: "PATCH /ads/{ad_id}",
  deactivateAd: "DELETE /ads/{ad_id}",
  postClick: "POST /ads/click",
  postImpression: "POST /ads/impression",
  postEvents: "POST /ads/events",
  getAdsAnalytics: "GET /ads/analytics",
  getAdAnalytics: "GET /ads/{ad_id}/analytics",
  getSeries: "GET /ads/analytics/series",
  getBreakdown: "GET /ads/analytics/breakdown",
  trackClick: "GET /c/{ad_id}",
  trackImpression: "GET /i/{file}",
};

/** The routes requested through the clients, as `METHOD /path` of the spec. */
const driven = new Set<string>();
const recordRoute: Middleware = {
  onRequest({ request, schemaPath }) {
    driven.add(`${request.method} ${schemaPath}`);
  },
};

function timedFetch(request: Request): Promise<Response> {
  return fetch(request, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
}

/** NDJSON: one event per line (the spec's `application/x-ndjson` schema is one line's). */
function ndjson(body: BatchEvent | BatchEvent[]): string {
  return (Array.isArray(body) ? body : [body]).map((event) => `${JSON.stringify(event)}\n`).join("");
}

function fail(what: string, detail: unknown): never {
  console.error(`FAILED  ${what}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  process.exit(1);
}

function check(condition: boolean, what: string, detail: unknown): asserts condition {
  if (!condition) fail(what, detail);
  console.log(`ok  ${what}`);
}

function close(actual: number | null | undefined, expected: number): boolean {
  return actual != null && Math.abs(actual - expected) < 1e-9;
}

function sum(buckets: Schemas["Bucket"][], metric: "clicks" | "impressions"): number {
  return buckets.reduce((total, bucket) => total + bucket[metric], 0);
}

/** What every openapi-fetch call resolves to. */
type Answer = { data?: unknown; error?: unknown; response: Response };

/** Sends a request and checks its status; every error answer must be an RFC 9457 problem. */
async function expectStatus<A extends Answer>(what: string, status: number, pending: Promise<A>): Promise<A> {
  let answer: A;
  try {
    answer = await pending;
  } catch (error) {
    fail(what, `no answer: ${String(error)}`);
  }
  const { response } = answer;
  if (response.status !== status) {
    fail(what, `expected ${status}, got ${response.status}: ${JSON.stringify(answer.error ?? answer.data)}`);
  }
  if (status >= 400) {
    const contentType = response.headers.get("content-type");
    if (contentType !== "application/problem+json") fail(what, `a ${status} answer of type ${contentType}`);
    if (!isProblem(answer.error, status)) fail(what, `not an RFC 9457 problem: ${JSON.stringify(answer.error)}`);
  }
  console.log(`ok  ${what}: ${status}`);
  return answer;
}

function isProblem(body: unknown, status: number): body is Problem {
  if (typeof body !== "object" || body === null) return false;
  const problem = body as Record<string, unknown>;
  return typeof problem.type === "string" && typeof problem.title === "string" && typeof problem.detail === "string"
    && problem.status === status;
}

/** The parsed body of a success answer. */
async function expectData<A extends Answer>(what: string, status: number, pending: Promise<A>): Promise<NonNullable<A["data"]>> {
  const data: A["data"] = (await expectStatus(what, status, pending)).data;
  if (data === undefined || data === null) fail(what, `the client parsed no body from the ${status} answer`);
  return data;
}

/** The problem of an error answer. */
async function expectProblem(what: string, status: number, pending: Promise<Answer>): Promise<Problem> {
  const { error } = await expectStatus(what, status, pending);
  if (!isProblem(error, status)) fail(what, error);
  return error;
}

async function main(): Promise<void> {
  const [ingestUrl, queryUrl, apiKey] = process.argv.slice(2);
  if (!ingestUrl || !queryUrl || !apiKey) fail("usage", "node roundtrip.js INGEST_URL QUERY_URL API_KEY");

  const ingest = createClient<paths>({ baseUrl: ingestUrl, headers: { "user-agent": BROWSER }, fetch: timedFetch });
  const query = createClient<paths>({ baseUrl: queryUrl, headers: { authorization: `Bearer ${apiKey}` }, fetch: timedFetch });
  const anonymous = createClient<paths>({ baseUrl: queryUrl, fetch: timedFetch });
  for (const client of [ingest, query, anonymous]) client.use(recordRoute);
  console.log(`openapi-fetch clients; ingest ${ingestUrl}, query ${queryUrl}`);

  // --- the catalog
  const unauthorized = await expectStatus("listAds without the API key", 401,
    anonymous.GET("/ads", { params: { query: { page: 1, limit: 3 } } }));
  check(unauthorized.response.headers.get("www-authenticate")?.startsWith("Bearer") === true,
    "listAds 401 asks for a bearer token", unauthorized.response.headers.get("www-authenticate"));
  const page = await expectData("listAds page 1", 200, query.GET("/ads", { params: { query: { page: 1, limit: 3 } } }));
  check(page.pagination.total === SEEDED_ADS, "listAds total", page.pagination);
  check(page.pagination.total_pages === 2 && page.ads.length === 3, "listAds page 1 size", page.pagination);
  const rest = await expectData("listAds page 2", 200, query.GET("/ads", { params: { query: { page: 2, limit: 3 } } }));
  const listed = [...page.ads, ...rest.ads].map((ad) => ad.id).sort();
  check(JSON.stringify(listed) === JSON.stringify([TRAIL_RUNNER, COFFEE_CLUB, CITY_BREAK, INACTIVE].sort()),
    "listAds pages hold every seeded ad once", listed);
  await expectProblem("listAds limit over 100", 400, query.GET("/ads", { params: { query: { page: 1, limit: 1000 } } }));

  const ad = await expectData("getAd", 200, query.GET("/ads/{ad_id}", { params: { path: { ad_id: TRAIL_RUNNER } } }));
  check(ad.id === TRAIL_RUNNER && ad.active && ad.title.length > 0, "getAd body", ad);
  const inactive = await expectData("getAd inactive", 200, query.GET("/ads/{ad_id}", { params: { path: { ad_id: INACTIVE } } }));
  check(!inactive.active, "getAd inactive ad", inactive);
  await expectProblem("getAd unknown ad", 404, query.GET("/ads/{ad_id}", { params: { path: { ad_id: randomUUID() } } }));

  // --- events, on ads nothing else touches until the counts below are checked
  const clickId = randomUUID();
  const accepted = await expectData("postClick", 202, ingest.POST("/ads/click", {
    body: { ad_id: CITY_BREAK, event_id: clickId, playback_time_secs: 12.5, watched_percent: 40.0 },
  }));
  check(accepted.event_id === clickId && accepted.status === "accepted", "postClick body", accepted);
  const again = await expectData("postClick retry with the same event_id", 202, ingest.POST("/ads/click", {
    body: { ad_id: CITY_BREAK, event_id: clickId },
  }));
  check(again.event_id === clickId, `postClick retry answers for the same event (${again.status})`, again);
  const impression = await expectData("postImpression", 202, ingest.POST("/ads/impression", { body: { ad_id: CITY_BREAK } }));
  check(impression.status === "accepted" && impression.event_id[14] === "7", "postImpression assigns a UUIDv7", impression);
  const inactiveAd = await expectProblem("postClick inactive ad", 422, ingest.POST("/ads/click", { body: { ad_id: INACTIVE } }));
  check(inactiveAd.field === "ad_id", "postClick inactive ad names ad_id", inactiveAd);
  await expectProblem("postImpression unknown ad", 422, ingest.POST("/ads/impression", { body: { ad_id: randomUUID() } }));
  const overfull = await expectProblem("postClick watched_percent over 100", 422, ingest.POST("/ads/click", {
    body: { ad_id: CITY_BREAK, watched_percent: 101.0 },
  }));
  check(overfull.field === "watched_percent", "postClick names watched_percent", overfull);

  // A JSON array, then NDJSON: each event passes or fails on its own.
  const batch = await expectData("postEvents JSON array with one inactive ad", 207, ingest.POST("/ads/events", {
    body: [
      { type: "click", ad_id: CITY_BREAK, playback_time_secs: 3.0 },
      { type: "impression", ad_id: CITY_BREAK },
      { type: "click", ad_id: INACTIVE },
    ],
  }));
  check(JSON.stringify(batch.results.map((r) => r.status)) === JSON.stringify(["accepted", "accepted", "rejected"]),
    "postEvents results", batch);
  check(batch.accepted === 2 && batch.duplicates === 0 && batch.rejected === 1 && batch.unavailable === 0,
    "postEvents counts", batch);
  check(batch.results[2]?.field === "ad_id", "postEvents names the rejected field", batch);
  const allStored = await expectData("postEvents all stored", 202, ingest.POST("/ads/events", {
    body: [{ type: "impression", ad_id: TRAIL_RUNNER }],
  }));
  check(allStored.accepted === 1 && allStored.results[0]?.status === "accepted", "postEvents 202 body", allStored);

  const lines: BatchEvent[] = [
    { type: "impression", ad_id: COFFEE_CLUB, event_id: randomUUID() },
    { type: "click", ad_id: COFFEE_CLUB, event_id: randomUUID(), playback_time_secs: 5.0, watched_percent: 25.0 },
    { type: "click", ad_id: CITY_BREAK, event_id: clickId },
    { type: "impression", ad_id: randomUUID() },
  ];
  const streamed = await expectData("postEvents NDJSON with a retried event and an unknown ad", 207, ingest.POST("/ads/events", {
    body: lines,
    bodySerializer: ndjson,
    headers: { "content-type": "application/x-ndjson" },
  }));
  const [first, second, retried, unknown] = streamed.results;
  check(streamed.results.length === lines.length && first?.event_id === lines[0]?.event_id && first?.status === "accepted"
    && second?.event_id === lines[1]?.event_id && second?.status === "accepted", "postEvents NDJSON answers each line in order",
    streamed);
  // Counted once either way; the answer is `duplicate` only when JetStream saw both copies alone.
  check(retried?.event_id === clickId && (retried.status === "duplicate" || retried.status === "accepted"),
    `postEvents NDJSON stores a retried event_id as the same event (${retried?.status})`, streamed);
  check(unknown?.status === "rejected" && unknown.field === "ad_id" && unknown.event_id === undefined,
    "postEvents NDJSON rejects the unknown ad's line", streamed);
  check(streamed.accepted + streamed.duplicates === 3 && streamed.rejected === 1 && streamed.unavailable === 0,
    "postEvents NDJSON counts", streamed);

  // --- analytics. CITY_BREAK: 2 clicks (one sent three times), 2 impressions; COFFEE_CLUB: 1 of
  // each; TRAIL_RUNNER: 1 impression. All from one visitor. In the report's order: by ad_id.
  const expected = [
    { ad_id: TRAIL_RUNNER, clicks: 0, impressions: 1, unique_clicks: 0 },
    { ad_id: COFFEE_CLUB, clicks: 1, impressions: 1, unique_clicks: 1 },
    { ad_id: CITY_BREAK, clicks: 2, impressions: 2, unique_clicks: 1 },
  ];
  const deadline = Date.now() + COUNTED_WITHIN_MS;
  for (let polls = 1; ; polls += 1) {
    const { data: report, response } = await query.GET("/ads/analytics", { params: { query: { timeframe: "1h" } } });
    if (!report) fail("getAdsAnalytics while waiting for the events", `${response.status}`);
    const counted = report.ads.map(({ ad_id, clicks, impressions, unique_clicks }) => ({ ad_id, clicks, impressions, unique_clicks }));
    if (JSON.stringify(counted) === JSON.stringify(expected)) {
      console.log(`ok  getAdsAnalytics counts every event exactly once (poll ${polls})`);
      break;
    }
    if (Date.now() > deadline) fail("getAdsAnalytics never counted the events", { expected, last: counted });
    await new Promise((resolve) => setTimeout(resolve, 500));
  }

  const one = await expectData("getAdsAnalytics for one ad", 200,
    query.GET("/ads/analytics", { params: { query: { ad_id: CITY_BREAK, timeframe: "1h" } } }));
  const row = one.ads[0];
  check(one.ads.length === 1 && row?.ad_id === CITY_BREAK && row.clicks === 2 && row.impressions === 2 && row.unique_clicks === 1,
    "getAdsAnalytics holds exactly the ad asked for", one);
  check(close(row.ctr, 1.0), "ctr = clicks / impressions", row);
  check(close(row.avg_playback_time_secs, 7.75), "avg_playback_time_secs over the clicks that reported one", row);
  check(close(row.avg_watched_percent, 40.0), "avg_watched_percent over the clicks that reported one", row);
  check(Date.parse(one.from) < Date.parse(one.to), "window", one);

  const day = await expectData("getAdsAnalytics for every ad", 200,
    query.GET("/ads/analytics", { params: { query: { timeframe: "24h" } } }));
  const coffee = day.ads.find((r) => r.ad_id === COFFEE_CLUB);
  check(coffee !== undefined && close(coffee.ctr, 1.0) && close(coffee.avg_playback_time_secs, 5.0)
    && close(coffee.avg_watched_percent, 25.0), "every ad's report holds the NDJSON events", day);
  const trail = day.ads.find((r) => r.ad_id === TRAIL_RUNNER);
  check(trail !== undefined && close(trail.ctr, 0) && trail.avg_playback_time_secs == null, "every ad's report holds TRAIL_RUNNER", day);
  check(day.total.clicks === 3 && day.total.impressions === 4 && day.total.unique_clicks === 1, "getAdsAnalytics total", day.total);

  const top = await expectData("getAdsAnalytics top ad by clicks", 200,
    query.GET("/ads/analytics", { params: { query: { timeframe: "1h", sort: "clicks", limit: 1 } } }));
  check(JSON.stringify(top.ads.map((r) => r.ad_id)) === JSON.stringify([CITY_BREAK]), "getAdsAnalytics sort=clicks limit=1", top);
  const compared = await expectData("getAdAnalytics compare=previous", 200, query.GET("/ads/{ad_id}/analytics", {
    params: { path: { ad_id: CITY_BREAK }, query: { timeframe: "1h", compare: "previous" } },
  }));
  check(compared.previous?.totals.clicks === 0 && compared.totals.clicks === 2,
    "getAdAnalytics previous period (the hour before: no events)", compared);

  const series = await expectData("getAdAnalytics by minute", 200, query.GET("/ads/{ad_id}/analytics", {
    params: { path: { ad_id: CITY_BREAK }, query: { timeframe: "1h", granularity: "minute" } },
  }));
  check(series.ad_id === CITY_BREAK && series.granularity === "minute", "getAdAnalytics echo", series);
  check(series.totals.clicks === 2 && series.totals.impressions === 2 && series.totals.unique_clicks === 1,
    "getAdAnalytics totals", series.totals);
  check(sum(series.series, "clicks") === 2 && sum(series.series, "impressions") === 2,
    "getAdAnalytics buckets add up to the totals", series);
  check(series.series.length >= 60 && series.series.length <= 62, "an hour of minute buckets", series.series.length);

  // Every ad together: the report's total, bucket by bucket.
  const hour = await expectData("getAdsAnalytics for the hour", 200,
    query.GET("/ads/analytics", { params: { query: { timeframe: "1h" } } }));
  const together = await expectData("getSeries by minute", 200,
    query.GET("/ads/analytics/series", { params: { query: { timeframe: "1h", granularity: "minute" } } }));
  check(together.totals.clicks === hour.total.clicks && together.totals.impressions === hour.total.impressions
    && together.totals.impressions > series.totals.impressions, "getSeries totals are every ad's", together.totals);
  check(sum(together.series, "impressions") === together.totals.impressions, "getSeries buckets add up", together);
  await expectProblem("getSeries too many buckets", 422, query.GET("/ads/analytics/series", {
    params: { query: { granularity: "minute", from: "2000-01-01T00:00:00Z" } },
  }));

  await expectProblem("getAdAnalytics unknown ad", 404, query.GET("/ads/{ad_id}/analytics", {
    params: { path: { ad_id: randomUUID() }, query: { timeframe: "1h" } },
  }));
  await expectProblem("getAdsAnalytics unknown ad", 404,
    query.GET("/ads/analytics", { params: { query: { ad_id: randomUUID(), timeframe: "1h" } } }));
  await expectProblem("getAdsAnalytics timeframe with from", 422,
    query.GET("/ads/analytics", { params: { query: { timeframe: "1h", from: "2026-01-01T00:00:00Z" } } }));
  await expectProblem("getAdAnalytics too many buckets", 422, query.GET("/ads/{ad_id}/analytics", {
    params: { path: { ad_id: CITY_BREAK }, query: { granularity: "minute", from: "2000-01-01T00:00:00Z" } },
  }));

  // --- breakdowns: CITY_BREAK is the only ad of campaign autumn-travel, COFFEE_CLUB of coffee-club
  const breakdown = await expectData("getBreakdown by campaign", 200,
    query.GET("/ads/analytics/breakdown", { params: { query: { by: "campaign", timeframe: "1h" } } }));
  const travel = breakdown.groups.find((g) => g.value === "autumn-travel");
  check(travel?.clicks === 2 && travel.impressions === 2 && travel.unique_clicks === 1,
    "getBreakdown counts CITY_BREAK's events under its campaign", breakdown);
  const coffeeClub = breakdown.groups.find((g) => g.value === "coffee-club");
  check(coffeeClub?.clicks === 1 && coffeeClub.impressions === 1, "getBreakdown counts the NDJSON events under their campaign",
    breakdown);

  // --- ads management
  const created = await expectStatus("createAd", 201, query.POST("/ads", {
    body: {
      title: "Winter boots", media_url: "https://cdn.example.com/boots.mp4", target_url: "https://shop.example.com/boots",
      campaign_id: "winter",
    },
  }));
  const newAd = created.data;
  check(newAd?.active === true && newAd.campaign_id === "winter" && newAd.description === "", "createAd body (defaults applied)",
    newAd);
  check(created.response.headers.get("location")?.endsWith(`/ads/${newAd.id}`) === true, "createAd Location is the new ad's",
    created.response.headers.get("location"));
  const changed = await expectData("updateAd", 200, query.PATCH("/ads/{ad_id}", {
    params: { path: { ad_id: newAd.id } }, body: { title: "Snow boots" },
  }));
  check(changed.title === "Snow boots" && changed.target_url === newAd.target_url, "updateAd changes only the title", changed);
  await expectProblem("updateAd unknown ad", 404, query.PATCH("/ads/{ad_id}", {
    params: { path: { ad_id: randomUUID() } }, body: { title: "x" },
  }));
  const off = await expectData("deactivateAd", 200, query.DELETE("/ads/{ad_id}", { params: { path: { ad_id: newAd.id } } }));
  check(!off.active, "deactivateAd body", off);
  await expectProblem("createAd with an existing id", 409, query.POST("/ads", {
    body: {
      id: TRAIL_RUNNER, title: "Copy", media_url: "https://cdn.example.com/x.mp4", target_url: "https://shop.example.com/x",
      campaign_id: "copy",
    },
  }));

  // --- tracking links and pixels (after the exact counts above)
  const redirect = await expectStatus("trackClick", 302, ingest.GET("/c/{ad_id}", {
    params: { path: { ad_id: TRAIL_RUNNER }, query: { click_id: "sdk-ts-1" } },
    redirect: "manual",
  }));
  check(redirect.response.headers.get("location") === "https://shop.example.com/trail-runner-3?click_id=sdk-ts-1",
    "trackClick redirects to the ad's page", Object.fromEntries(redirect.response.headers));
  await expectProblem("trackClick unknown ad", 404,
    ingest.GET("/c/{ad_id}", { params: { path: { ad_id: randomUUID() } }, redirect: "manual" }));
  const pixel = await expectStatus("trackImpression", 200,
    ingest.GET("/i/{file}", { params: { path: { file: `${TRAIL_RUNNER}.gif` } }, parseAs: "arrayBuffer" }));
  const gif = Buffer.from(pixel.data ?? new ArrayBuffer(0));
  check(pixel.response.headers.get("content-type") === "image/gif" && gif.subarray(0, 6).toString("latin1") === "GIF89a",
    "trackImpression answers the pixel", { type: pixel.response.headers.get("content-type"), bytes: gif.toString("hex") });

  // Every operation of the spec was driven.
  const routes = Object.values(ROUTES);
  check(new Set(routes).size === routes.length, "each operation has its own route", ROUTES);
  const missing = Object.entries(ROUTES).filter(([, route]) => !driven.has(route)).map(([operation]) => operation);
  check(missing.length === 0, "every operation driven", { missing });
  console.log(`all ${routes.length} operations driven through the typed client: ${Object.keys(ROUTES).sort().join(", ")}`);
}

main().catch((error: unknown) => fail("the roundtrip", error instanceof Error ? error.stack ?? error.message : String(error)));
