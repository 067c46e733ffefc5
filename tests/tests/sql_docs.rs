//! `docs/sql.md` is for analysts to paste into clickhouse-client, so every ```sql block in it
//! must run, and its numbers must be right. Known clicks and impressions go in through ingest;
//! then every block runs in doc order in one ClickHouse session (a `SET param_...` stays set
//! for the blocks after it, as in clickhouse-client), and the answers of most examples are
//! compared with what was sent and with the analytics API.

use std::collections::BTreeMap;

use e2e::{Stack, AD_COFFEE_CLUB, AD_TRAIL_RUNNER};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, Time};

/// The session's time zone is deliberately not UTC: the doc promises UTC buckets whatever the
/// session's zone, and this would catch an example written with `today()` or `toDate(ts)`.
const SESSION_TIMEZONE: &str = "America/Los_Angeles";

/// A fenced ```sql block of the doc: the `###` heading above it ("" before the first one) and
/// its statements (each ends with `;` at the end of a line, as in the migrations).
struct Example {
    heading: String,
    statements: Vec<String>,
}

fn examples(doc: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut heading = String::new();
    let mut block: Option<String> = None;
    for line in doc.lines() {
        match block.as_mut() {
            None if line.trim_start() == "```sql" => block = Some(String::new()),
            None => {
                if let Some(title) = line.strip_prefix("### ") {
                    heading = title.trim().to_owned();
                }
            }
            Some(_) if line.trim_start().starts_with("```") => {
                let sql = block.take().unwrap_or_default();
                examples.push(Example { heading: heading.clone(), statements: aggregator::migrate::statements(&sql) });
            }
            Some(sql) => {
                sql.push_str(line);
                sql.push('\n');
            }
        }
    }
    assert!(block.is_none(), "docs/sql.md: a ```sql block is not closed");
    examples
}

/// One ClickHouse HTTP session (`session_id`): settings and query parameters set by one
/// statement hold for the next, as in an interactive clickhouse-client.
struct Session<'a> {
    stack: &'a Stack,
    id: String,
}

impl Session<'_> {
    /// Runs one statement; its rows as JSON objects keyed by column name.
    async fn run(&self, sql: &str) -> Result<Vec<Value>, String> {
        let response = self
            .stack
            .http
            .post(format!("{}/", self.stack.clickhouse.url))
            .basic_auth(&self.stack.clickhouse.user, Some(&self.stack.clickhouse.password))
            .query(&[
                ("database", self.stack.database.as_str()),
                ("session_id", self.id.as_str()),
                ("session_timezone", SESSION_TIMEZONE),
                ("default_format", "JSONEachRow"),
                ("output_format_json_quote_64bit_integers", "0"),
            ])
            .body(sql.to_owned())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        text.lines().map(|line| serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))).collect()
    }
}

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format timestamp")
}

fn int(row: &Value, column: &str) -> u64 {
    row[column].as_u64().unwrap_or_else(|| panic!("{column} is not a count in {row}"))
}

fn float(row: &Value, column: &str) -> Option<f64> {
    row[column].as_f64()
}

fn close(got: Option<f64>, expected: f64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: NULL, expected {expected}"));
    assert!((got - expected).abs() < 0.01, "{what}: {got}, expected {expected}");
}

/// The events sent: (visitor = user agent, ad, when, click or impression, playback, watched).
/// Every visitor posts from 127.0.0.1, so a user agent is a visitor.
///
/// Trail Runner yesterday 10:15 UTC: clicks v1 x2, v2, v3 (4 clicks, 3 visitors; playback 10,
/// 30, 20: mean 20; watched 50, 100: mean 75), impressions 2+2+2+1+1 = 8 from 5 visitors.
/// Three days ago: clicks v1, v4 (playback 20, watched 100), 2 impressions (v4). Now: a click of
/// v1. Over 7 days: 7 clicks, 4 people but 6 visitors (a visitor is a person within one UTC
/// day: 3 yesterday, 2 three days ago, 1 today), 10 impressions, playback mean 80/4 = 20,
/// watched mean 250/3. Coffee Club yesterday: 1 click of v1 (playback 5), 4 impressions of v2.
fn events(yesterday: OffsetDateTime, three_days_ago: OffsetDateTime) -> Vec<(&'static str, Value)> {
    let click = |ad: &str, when: OffsetDateTime, playback: Option<f64>, watched: Option<f64>| {
        let mut event = json!({"type": "click", "ad_id": ad, "timestamp": at(when)});
        if let Some(p) = playback {
            event["playback_time_secs"] = json!(p);
        }
        if let Some(w) = watched {
            event["watched_percent"] = json!(w);
        }
        event
    };
    let impression = |ad: &str, when: OffsetDateTime| json!({"type": "impression", "ad_id": ad, "timestamp": at(when)});
    let (a, b, y, d) = (AD_TRAIL_RUNNER, AD_COFFEE_CLUB, yesterday, three_days_ago);
    vec![
        ("v1", click(a, y, Some(10.0), Some(50.0))),
        ("v1", click(a, y, Some(30.0), None)),
        ("v2", click(a, y, Some(20.0), Some(100.0))),
        ("v3", click(a, y, None, None)),
        ("v1", impression(a, y)),
        ("v1", impression(a, y)),
        ("v2", impression(a, y)),
        ("v2", impression(a, y)),
        ("v3", impression(a, y)),
        ("v3", impression(a, y)),
        ("v4", impression(a, y)),
        ("v5", impression(a, y)),
        ("v1", click(a, d, Some(20.0), Some(100.0))),
        ("v4", click(a, d, None, None)),
        ("v4", impression(a, d)),
        ("v4", impression(a, d)),
        ("v1", click(b, y, Some(5.0), None)),
        ("v2", impression(b, y)),
        ("v2", impression(b, y)),
        ("v2", impression(b, y)),
        ("v2", impression(b, y)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_of_the_sql_doc_runs_and_gives_the_sent_numbers() {
    let doc = std::fs::read_to_string(e2e::workspace_root().join("docs/sql.md")).expect("read docs/sql.md");
    let examples = examples(&doc);
    assert!(examples.len() >= 7, "docs/sql.md has only {} sql blocks", examples.len());

    // "Yesterday" and "the last 7 days" must not move while the test runs: keep clear of midnight.
    let mut now = OffsetDateTime::now_utc();
    let to_midnight = 86_400 - i64::from(now.hour()) * 3_600 - i64::from(now.minute()) * 60 - i64::from(now.second());
    if to_midnight < 300 {
        tokio::time::sleep(std::time::Duration::from_secs(to_midnight as u64 + 5)).await;
        now = OffsetDateTime::now_utc();
    }
    let today = now.replace_time(Time::MIDNIGHT);
    let yesterday = today - Duration::DAY;
    let yesterday_10h15 = yesterday + Duration::minutes(10 * 60 + 15);
    let three_days_ago = today - Duration::days(3) + Duration::hours(12);

    let stack = Stack::start().await;
    let mut by_visitor: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (visitor, event) in events(yesterday_10h15, three_days_ago) {
        by_visitor.entry(visitor).or_default().push(event);
    }
    // One click at the receive time, for the "last hour" example.
    by_visitor.entry("v1").or_default().push(json!({"type": "click", "ad_id": AD_TRAIL_RUNNER}));
    let mut sent = 0;
    for (visitor, batch) in &by_visitor {
        let body = serde_json::to_vec(batch).expect("serialize");
        let (status, answer) =
            stack.post_raw("/ads/events", "application/json", body, &[("user-agent", visitor)]).await;
        assert_eq!(status, 202, "{answer}");
        sent += batch.len() as u64;
    }
    stack
        .wait_for_count("SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events)", sent)
        .await;
    // An insert commits the raw table's part before its views' parts: wait for the rollups too.
    let in_rollups = ["minute", "hour", "day"]
        .map(|unit| format!("(SELECT sum(clicks) FROM click_events_per_{unit}) + (SELECT sum(impressions) FROM impression_events_per_{unit})"))
        .join(" + ");
    stack.wait_for_count(&format!("SELECT {in_rollups}"), 3 * sent).await;

    let session = Session { stack: &stack, id: format!("sql-docs-{}", uuid::Uuid::new_v4().simple()) };
    let mut answers: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for example in &examples {
        assert!(!example.statements.is_empty(), "an empty sql block under {:?}", example.heading);
        for statement in &example.statements {
            let rows = session
                .run(statement)
                .await
                .unwrap_or_else(|e| panic!("docs/sql.md, {:?}:\n{statement}\nfailed: {e}", example.heading));
            println!("{:?}: {} rows", example.heading, rows.len());
            answers.insert(example.heading.clone(), rows);
        }
    }
    let answer = |prefix: &str| -> &Vec<Value> {
        answers
            .iter()
            .find(|(heading, _)| heading.starts_with(prefix))
            .map(|(_, rows)| rows)
            .unwrap_or_else(|| panic!("no example headed {prefix:?} in docs/sql.md"))
    };

    // 1. Per ad, yesterday: ordered by clicks.
    let rows = answer("1.");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (runner, coffee) = (&rows[0], &rows[1]);
    assert_eq!(runner["title"], "Trail Runner 3");
    assert_eq!((int(runner, "clicks"), int(runner, "unique_clicks"), int(runner, "impressions")), (4, 3, 8));
    close(float(runner, "ctr"), 0.5, "Trail Runner ctr");
    close(float(runner, "avg_playback_time_secs"), 20.0, "Trail Runner playback");
    assert_eq!(coffee["ad_id"], AD_COFFEE_CLUB);
    assert_eq!((int(coffee, "clicks"), int(coffee, "unique_clicks"), int(coffee, "impressions")), (1, 1, 4));
    close(float(coffee, "ctr"), 0.25, "Coffee Club ctr");

    // 2. Hour by hour yesterday: 24 rows, all events in the 10:00 one.
    let rows = answer("2.");
    assert_eq!(rows.len(), 24, "{rows:?}");
    let ten = format!("{} 10:00:00", yesterday.date());
    for row in rows {
        let expected = if row["hour"] == ten.as_str() { (4, 3, 8) } else { (0, 0, 0) };
        assert_eq!((int(row, "clicks"), int(row, "unique_clicks"), int(row, "impressions")), expected, "{row}");
    }

    // 3. The last hour, by minute: the one click sent without a timestamp.
    let rows = answer("3.");
    assert_eq!(rows.iter().map(|r| int(r, "clicks")).sum::<u64>(), 1, "{rows:?}");

    // 4. Top ads by unique clicks over 7 days: each day's visitors, which merging the days'
    // states counts as adding their counts would.
    let rows = answer("4.");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0]["title"].as_str(), int(&rows[0], "unique_clicks"), int(&rows[0], "clicks")),
        (Some("Trail Runner 3"), 6, 7)
    );
    assert_eq!(
        (rows[1]["title"].as_str(), int(&rows[1], "unique_clicks"), int(&rows[1], "clicks")),
        (Some("Coffee Club"), 1, 1)
    );

    // 5. CTR per campaign over 7 days.
    let rows = answer("5.");
    let campaigns: BTreeMap<&str, (u64, u64, Option<f64>)> = rows
        .iter()
        .map(|r| (r["campaign_id"].as_str().unwrap_or(""), (int(r, "clicks"), int(r, "impressions"), float(r, "ctr"))))
        .collect();
    assert_eq!(campaigns.len(), 2, "{rows:?}");
    assert_eq!(campaigns["spring-launch"], (7, 10, Some(0.7)));
    assert_eq!(campaigns["coffee-club"], (1, 4, Some(0.25)));

    // 6. Playback over 7 days: sums over counts, not a mean of daily means.
    let rows = answer("6.");
    let runner = rows.iter().find(|r| r["ad_id"] == AD_TRAIL_RUNNER).expect("Trail Runner in example 6");
    assert_eq!((int(runner, "clicks"), int(runner, "with_playback")), (7, 4));
    close(float(runner, "avg_playback_time_secs"), 20.0, "7-day playback");
    close(float(runner, "avg_watched_percent"), 250.0 / 3.0, "7-day watched percent");

    // 7. The raw tables and the rollups agree, with what was sent.
    let rows = answer("7.");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in rows {
        assert_eq!((int(row, "clicks"), int(row, "unique_clicks"), int(row, "impressions")), (7, 6, 10), "{row}");
    }

    // 8. Every ad, per day: every click of the sample is in it.
    let rows = answer("8.");
    assert_eq!(rows.iter().map(|r| int(r, "clicks")).sum::<u64>(), 8, "{rows:?}");
    assert_eq!(rows.iter().map(|r| int(r, "impressions")).sum::<u64>(), 14, "{rows:?}");

    // 9. Raw clicks by user agent, yesterday: v1's two clicks first.
    let rows = answer("9.");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!((rows[0]["user_agent"].as_str(), int(&rows[0], "clicks")), (Some("v1"), 2));
    close(float(&rows[0], "avg_playback_time_secs"), 20.0, "v1's playback");

    // 10. Percentiles over 7 days: the API's, from the same states.
    let rows = answer("10.");
    let runner = rows.iter().find(|r| r["ad_id"] == AD_TRAIL_RUNNER).expect("Trail Runner in example 10");
    let (status, week) = stack.get(&format!("/ads/analytics?ad_id={AD_TRAIL_RUNNER}&timeframe=7d")).await;
    assert_eq!(status, 200, "{week}");
    for column in ["p50_playback_time_secs", "p95_playback_time_secs"] {
        let api = week["ads"][0][column].as_f64().unwrap_or_else(|| panic!("{column} in {week}"));
        close(float(runner, column), (api * 100.0).round() / 100.0, column);
    }

    // 11. By device type and country over 7 days: every event of the sample, once.
    let rows = answer("11.");
    assert_eq!(rows.iter().map(|r| int(r, "clicks")).sum::<u64>(), 8, "{rows:?}");
    assert_eq!(rows.iter().map(|r| int(r, "impressions")).sum::<u64>(), 14, "{rows:?}");
    let (_, by_device) = stack.get("/ads/analytics/breakdown?by=device_type&timeframe=7d").await;
    for group in by_device["groups"].as_array().expect("groups") {
        let device = group["value"].as_str().unwrap_or("");
        let clicks: u64 = rows.iter().filter(|r| r["device"] == device).map(|r| int(r, "clicks")).sum();
        assert_eq!(Some(clicks), group["clicks"].as_u64(), "{device}: example 11 against the breakdown API");
    }

    // The views answer what the API answers, for the same UTC day and its hours.
    let window = format!("from={}&to={}", at(yesterday), at(today));
    let (status, report) = stack.get(&format!("/ads/analytics?{window}")).await;
    assert_eq!(status, 200, "{report}");
    let api_ads = report["ads"].as_array().expect("ads");
    assert_eq!(api_ads.len(), 2, "{report}");
    for api in api_ads {
        let ad = api["ad_id"].as_str().expect("ad_id");
        let rows = session
            .run(&format!("SELECT * FROM ad_metrics_per_day WHERE ad_id = '{ad}' AND day = '{}'", yesterday.date()))
            .await
            .expect("the day view");
        assert_eq!(rows.len(), 1, "{rows:?}");
        let view = &rows[0];
        for column in ["clicks", "unique_clicks", "impressions"] {
            assert_eq!(api[column].as_u64(), view[column].as_u64(), "{ad} {column}: API {api}, view {view}");
        }
        for column in ["ctr", "avg_playback_time_secs"] {
            let (from_api, from_view) = (api[column].as_f64(), view[column].as_f64());
            let same = match (from_api, from_view) {
                (Some(a), Some(v)) => (a - v).abs() < 1e-9,
                (a, v) => a == v,
            };
            assert!(same, "{ad} {column}: API {api}, view {view}");
        }
    }
    let (status, series) = stack.get(&format!("/ads/{AD_TRAIL_RUNNER}/analytics?{window}&granularity=hour")).await;
    assert_eq!(status, 200, "{series}");
    let api_hours: Vec<(String, u64, u64, u64)> = series["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|b| b["clicks"].as_u64().unwrap_or(0) + b["impressions"].as_u64().unwrap_or(0) > 0)
        .map(|b| {
            (
                b["start"].as_str().unwrap_or("").to_owned(),
                int(b, "clicks"),
                int(b, "unique_clicks"),
                int(b, "impressions"),
            )
        })
        .collect();
    let view_hours: Vec<(String, u64, u64, u64)> = session
        .run(&format!(
            "SELECT formatDateTime(hour, '%Y-%m-%dT%H:%i:%SZ', 'UTC') AS start, clicks, unique_clicks, impressions \
             FROM ad_metrics_per_hour WHERE ad_id = '{AD_TRAIL_RUNNER}' AND hour >= '{} 00:00:00' AND hour < '{} 00:00:00' ORDER BY hour",
            yesterday.date(),
            today.date()
        ))
        .await
        .expect("the hour view")
        .iter()
        .map(|r| (r["start"].as_str().unwrap_or("").to_owned(), int(r, "clicks"), int(r, "unique_clicks"), int(r, "impressions")))
        .collect();
    assert_eq!(api_hours, view_hours, "hourly buckets: API versus ad_metrics_per_hour");
    assert_eq!(view_hours.len(), 1, "{view_hours:?}");
}
