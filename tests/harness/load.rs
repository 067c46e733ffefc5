//! Steady client load on ingest, and the check that every 202 was counted once.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::{browser_like_client, eventually, nats_admin, Stack, AD_CITY_BREAK, AD_COFFEE_CLUB, AD_TRAIL_RUNNER};

/// What a [`Load`] did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Distinct event ids that got a 202, by kind: exactly what must be counted.
    pub clicks: HashSet<uuid::Uuid>,
    pub impressions: HashSet<uuid::Uuid>,
    /// Every answer by status (0: no answer, e.g. connection refused).
    pub statuses: BTreeMap<u16, u64>,
}

impl LoadReport {
    pub fn sends(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// Client traffic that behaves as a careful SDK should: each event carries its own event_id and
/// is sent until ingest answers 202, retrying 503s and connection errors with the same id; every
/// `repeat_every`-th event is then sent once more (a retry after a lost answer).
pub struct Load {
    task: tokio::task::JoinHandle<LoadReport>,
}

impl Load {
    /// `events` events over the three sample ads (one in four an impression), `concurrency` at a
    /// time, each sender pausing `pause` between its events.
    pub fn start(ingest_url: String, events: usize, concurrency: usize, repeat_every: usize, pause: Duration) -> Load {
        let task = tokio::spawn(async move {
            let http = browser_like_client().timeout(Duration::from_secs(10)).build().expect("http client");
            let outcomes: Vec<(bool, uuid::Uuid, Vec<u16>)> = futures::stream::iter(0..events)
                .map(|i| {
                    let (http, url) = (http.clone(), ingest_url.clone());
                    async move {
                        let ads = [AD_TRAIL_RUNNER, AD_COFFEE_CLUB, AD_CITY_BREAK];
                        let id = uuid::Uuid::now_v7();
                        let (is_click, path) =
                            if i % 4 == 3 { (false, "/ads/impression") } else { (true, "/ads/click") };
                        let mut body = json!({"event_id": id, "ad_id": ads[i % 3]});
                        if is_click {
                            body["playback_time_secs"] = json!((i % 60) as f64);
                        }
                        let sends = if repeat_every > 0 && i % repeat_every == 0 { 2 } else { 1 };
                        let mut statuses = Vec::new();
                        for _ in 0..sends {
                            loop {
                                let status = match http.post(format!("{url}{path}")).json(&body).send().await {
                                    Ok(response) => response.status().as_u16(),
                                    Err(_) => 0,
                                };
                                statuses.push(status);
                                match status {
                                    202 => break,
                                    0 | 503 => tokio::time::sleep(Duration::from_millis(100)).await,
                                    _ => return (is_click, id, statuses),
                                }
                            }
                        }
                        tokio::time::sleep(pause).await;
                        (is_click, id, statuses)
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            let mut report = LoadReport::default();
            for (is_click, id, statuses) in outcomes {
                if statuses.last() == Some(&202) {
                    if is_click {
                        report.clicks.insert(id)
                    } else {
                        report.impressions.insert(id)
                    };
                }
                for status in statuses {
                    *report.statuses.entry(status).or_default() += 1;
                }
            }
            report
        });
        Load { task }
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until every event got its 202 (or a final error).
    pub async fn finish(self) -> LoadReport {
        self.task.await.expect("load task")
    }
}

impl Stack {
    /// Asserts that ClickHouse holds exactly the events `report` got 202s for: each once, in the
    /// raw tables and in the rollups. Prints expected versus actual.
    pub async fn assert_counted_exactly(&self, report: &LoadReport) {
        let (clicks, impressions) = (report.clicks.len() as u64, report.impressions.len() as u64);
        eventually("every accepted event in ClickHouse", || async {
            let stored =
                self.count("SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events)").await;
            if stored >= clicks + impressions {
                Ok(())
            } else {
                Err(format!("{stored} of {} rows", clicks + impressions))
            }
        })
        .await;
        // Only once the consumer has nothing pending or unacked can no redelivery still come.
        eventually("the consumer to drain", || async {
            match self.stream_state().await {
                (_, 0, 0) => Ok(()),
                (_, pending, unacked) => Err(format!("{pending} pending, {unacked} unacked")),
            }
        })
        .await;
        let raw_clicks = self.count("SELECT count() FROM click_events").await;
        let distinct_clicks = self.count("SELECT uniqExact(event_id) FROM click_events").await;
        let rollup_clicks = self.count("SELECT sum(clicks) FROM click_events_per_minute").await;
        let raw_impressions = self.count("SELECT count() FROM impression_events").await;
        let rollup_impressions = self.count("SELECT sum(impressions) FROM impression_events_per_minute").await;
        println!(
            "clicks: expected {clicks}, raw {raw_clicks} (distinct {distinct_clicks}), rollup {rollup_clicks}; \
             impressions: expected {impressions}, raw {raw_impressions}, rollup {rollup_impressions}; answers {:?}",
            report.statuses
        );
        assert_eq!((raw_clicks, distinct_clicks, rollup_clicks), (clicks, clicks, clicks), "clicks");
        assert_eq!((raw_impressions, rollup_impressions), (impressions, impressions), "impressions");
        for rollup in ["hour", "day"] {
            let clicks_in = self.count(&format!("SELECT sum(clicks) FROM click_events_per_{rollup}")).await;
            let impressions_in =
                self.count(&format!("SELECT sum(impressions) FROM impression_events_per_{rollup}")).await;
            assert_eq!((clicks_in, impressions_in), (clicks, impressions), "per-{rollup} rollups");
        }
        for (table, accepted) in [("click_events", &report.clicks), ("impression_events", &report.impressions)] {
            let ids = self.sql(&format!("SELECT event_id FROM {table}")).await.expect("event ids");
            let stored: HashSet<uuid::Uuid> = ids.lines().filter_map(|l| l.parse().ok()).collect();
            assert!(&stored == accepted, "{table} holds exactly the accepted events");
        }
    }

    /// Messages in the stream, and the aggregator consumer's undelivered and unacked counts.
    pub async fn stream_state(&self) -> (u64, u64, usize) {
        // Any live node will do (a test may have killed one).
        let js = async_nats::jetstream::new(nats_admin(&self.nats_url).await);
        let stream = js.get_stream("AD_EVENTS").await.expect("stream");
        let mut consumer =
            stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>("aggregator").await.expect("consumer");
        let info = consumer.info().await.expect("consumer info");
        let messages = stream.get_info().await.expect("stream info").state.messages;
        (messages, info.num_pending, info.num_ack_pending)
    }
}
