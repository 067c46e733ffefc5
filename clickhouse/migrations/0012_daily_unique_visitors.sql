-- Unique visitors of closed UTC days, stored as plain numbers (migration 0012).
--
-- Why: merging unique-visitor states is most of what a read over many ads or many days costs
-- (every ad's 30 days merge about 9M hashes of 10M events). But ingest keys visitor_id by the
-- UTC day of the event's own timestamp (README "Privacy"), so no id appears in two UTC days,
-- and the unique visitors of any window are the sum over its UTC days of each day's unique
-- visitors within the window. A day the window covers whole is then one stored number, and
-- only the partial days at its edges merge states.
--
-- The aggregator computes these exactly (uniqExact over the raw rows) for every UTC day before
-- today, and again whenever a day's event count in the rollups no longer matches `events`
-- (a late event arrived), see aggregator/src/closed_days.rs. The query service uses a row only
-- while `events` equals the day's count in <kind>_events_per_day, and merges that day's
-- states otherwise: a stale row is never read, so the answer does not wait for the next pass.
--
-- kind is 'click' or 'impression'. Read them with FINAL (the latest computation wins):
--   SELECT day, visitors FROM all_ads_unique_visitors_per_day FINAL WHERE kind = 'impression'

CREATE TABLE IF NOT EXISTS ad_unique_visitors_per_day
(
    kind        LowCardinality(String),
    ad_id       UUID,
    day         DateTime('UTC'),
    events      UInt64,
    visitors    UInt64,
    computed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
ORDER BY (kind, ad_id, day);

-- Every ad together: a visitor shown two ads is one visitor here.
CREATE TABLE IF NOT EXISTS all_ads_unique_visitors_per_day
(
    kind        LowCardinality(String),
    day         DateTime('UTC'),
    events      UInt64,
    visitors    UInt64,
    computed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
ORDER BY (kind, day);
