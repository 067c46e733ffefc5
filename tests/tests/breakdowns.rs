//! Breakdowns by ad, campaign, device type, browser and country, with filters: the API (audience
//! rollups for whole hours and days, raw rows for the minutes at the edges) against plain SQL
//! over the raw tables.

use std::collections::BTreeMap;

use e2e::{Stack, AD_CITY_BREAK, AD_COFFEE_CLUB, AD_TRAIL_RUNNER};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    // A television: device type "other", browser "samsung_internet".
    "Mozilla/5.0 (SMART-TV; Tizen 7.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/5.0 TV Safari/537.36",
];

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format timestamp")
}

/// `value -> (clicks, unique_clicks, impressions, unique_viewers)` from the API.
fn api_groups(answer: &Value) -> BTreeMap<String, (u64, u64, u64, u64)> {
    let n = |g: &Value, k: &str| g[k].as_u64().unwrap_or_else(|| panic!("{k} in {g}"));
    answer["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no groups in {answer}"))
        .iter()
        .map(|g| {
            (
                g["value"].as_str().unwrap_or("").to_owned(),
                (n(g, "clicks"), n(g, "unique_clicks"), n(g, "impressions"), n(g, "unique_viewers")),
            )
        })
        .collect()
}

/// The same from the raw tables; `key` is an SQL expression over `e` (the event) and `a` (its ad).
async fn raw_groups(stack: &Stack, key: &str, condition: &str) -> BTreeMap<String, (u64, u64, u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for (table, is_click) in [("click_events", true), ("impression_events", false)] {
        let sql = format!(
            "SELECT {key} AS k, count(), uniq(e.visitor_id) FROM {table} AS e \
             LEFT JOIN (SELECT id, campaign_id FROM ads FINAL) AS a ON a.id = e.ad_id WHERE {condition} GROUP BY k"
        );
        for line in stack.sql(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            let (count, unique) = (cols[1].parse().expect("count"), cols[2].parse().expect("uniq"));
            let entry = out.entry(cols[0].to_owned()).or_default();
            if is_click {
                (entry.0, entry.1) = (count, unique);
            } else {
                (entry.2, entry.3) = (count, unique);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakdowns_and_filters_match_the_raw_events() {
    let stack = Stack::start().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2611);
    let now = OffsetDateTime::now_utc();
    let mut sent = 0;
    for agent in AGENTS {
        let items: Vec<Value> = (0..150)
            .map(|_| {
                let ts = at(now - Duration::seconds(rng.random_range(60..3 * 86_400)));
                let ad = [AD_TRAIL_RUNNER, AD_COFFEE_CLUB, AD_CITY_BREAK][rng.random_range(0..3)];
                let mut event = if rng.random_bool(0.3) {
                    json!({"type": "click", "ad_id": ad, "timestamp": ts})
                } else {
                    json!({"type": "impression", "ad_id": ad, "timestamp": ts})
                };
                match rng.random_range(0..4) {
                    0 => {}
                    1 => event["country"] = json!("fr"),
                    2 => event["country"] = json!("DE"),
                    _ => event["country"] = json!("us"),
                }
                event
            })
            .collect();
        let body = serde_json::to_vec(&items).expect("serialize");
        // Every request comes from 127.0.0.1, so each agent is one visitor.
        let (status, answer) = stack.post_raw("/ads/events", "application/json", body, &[("user-agent", agent)]).await;
        assert_eq!(status, 202, "{answer}");
        sent += 150;
    }
    let in_rollups =
        "(SELECT sum(clicks) FROM click_audience_per_day) + (SELECT sum(impressions) FROM impression_audience_per_day)";
    stack.wait_for_count(&format!("SELECT least({in_rollups}, (SELECT sum(clicks) FROM click_audience_per_hour) + (SELECT sum(impressions) FROM impression_audience_per_hour))"), sent).await;

    let minute =
        |t: OffsetDateTime| t - Duration::seconds(t.second() as i64) - Duration::nanoseconds(t.nanosecond() as i64);
    let windows = [
        (minute(now - Duration::days(4)), minute(now) + Duration::MINUTE),
        (
            minute(now - Duration::minutes(rng.random_range(1500..2500))),
            minute(now - Duration::minutes(rng.random_range(10..600))),
        ),
    ];
    let dimensions = [
        ("ad", "toString(e.ad_id)"),
        ("campaign", "a.campaign_id"),
        ("device_type", "if(e.device_type = '', 'unknown', e.device_type)"),
        ("browser", "if(e.browser = '', 'unknown', e.browser)"),
        ("country", "if(e.country = '', 'unknown', e.country)"),
    ];
    for (from, to) in windows {
        let window = format!(
            "e.timestamp >= toDateTime64({}, 3, 'UTC') AND e.timestamp < toDateTime64({}, 3, 'UTC')",
            from.unix_timestamp(),
            to.unix_timestamp()
        );
        for (by, key) in dimensions {
            let path = format!("/ads/analytics/breakdown?by={by}&from={}&to={}", at(from), at(to));
            let (status, answer) = stack.get(&path).await;
            assert_eq!(status, 200, "{path}: {answer}");
            assert_eq!(api_groups(&answer), raw_groups(&stack, key, &window).await, "{path}");
        }
        // Filters, combined.
        let path = format!(
            "/ads/analytics/breakdown?by=campaign&from={}&to={}&device_type=mobile&country=FR",
            at(from),
            at(to)
        );
        let (_, answer) = stack.get(&path).await;
        let condition = format!("{window} AND e.device_type = 'mobile' AND e.country = 'FR'");
        assert_eq!(api_groups(&answer), raw_groups(&stack, "a.campaign_id", &condition).await, "{path}");
        let path = format!("/ads/analytics/breakdown?by=ad&from={}&to={}&browser=safari&country=us", at(from), at(to));
        let (_, answer) = stack.get(&path).await;
        let condition = format!("{window} AND e.browser = 'safari' AND e.country = 'US'");
        assert_eq!(api_groups(&answer), raw_groups(&stack, "toString(e.ad_id)", &condition).await, "{path}");
        let path = format!(
            "/ads/analytics/breakdown?by=browser&from={}&to={}&campaign_id=coffee-club&ad_id={AD_COFFEE_CLUB}",
            at(from),
            at(to)
        );
        let (_, answer) = stack.get(&path).await;
        let condition = format!("{window} AND e.ad_id = '{AD_COFFEE_CLUB}'");
        assert_eq!(
            api_groups(&answer),
            raw_groups(&stack, "if(e.browser = '', 'unknown', e.browser)", &condition).await,
            "{path}"
        );
    }

    // What ingest derived, for the agents above: every device type but "bot" (a bot's events
    // are invalid traffic, in no breakdown).
    let (_, devices) = stack.get("/ads/analytics/breakdown?by=device_type&timeframe=7d&sort=clicks").await;
    let values: Vec<&str> =
        devices["groups"].as_array().expect("groups").iter().map(|g| g["value"].as_str().unwrap_or("")).collect();
    let mut sorted = values.clone();
    sorted.sort();
    assert_eq!(sorted, ["desktop", "mobile", "other", "tablet"], "{devices}");
    let clicks: Vec<u64> =
        devices["groups"].as_array().expect("groups").iter().map(|g| g["clicks"].as_u64().unwrap_or(0)).collect();
    assert!(clicks.windows(2).all(|w| w[0] >= w[1]), "sorted by clicks: {devices}");
    let (_, top) = stack.get("/ads/analytics/breakdown?by=country&timeframe=7d&limit=2").await;
    assert_eq!(top["groups"].as_array().map(Vec::len), Some(2), "{top}");

    let bad = [
        ("/ads/analytics/breakdown?by=planet", 400, "by"),
        ("/ads/analytics/breakdown?by=country&country=France", 422, "country"),
        ("/ads/analytics/breakdown?by=country&sort=avg_watched_percent", 422, "sort"),
        ("/ads/analytics/breakdown?by=browser&device_type=fridge", 400, "device_type"),
    ];
    for (path, expected, field) in bad {
        let (status, answer) = stack.get(path).await;
        assert_eq!((status, answer["field"].as_str()), (expected, Some(field)), "{path}: {answer}");
    }
}
