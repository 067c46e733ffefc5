-- Invalid traffic (migration 0011): flagged clicks and impressions, kept apart from billing.
--
-- A flagged event (bot user agent, data-centre address, duplicate click, click without an
-- impression: see schemas/src/ivt.rs) is written to invalid_events instead of click_events or
-- impression_events. So every billable rollup and view, fed by those two tables, leaves it out
-- without a filter anyone could forget, while invalid_events keeps the whole event and why.
-- Its own rollups count it per ad, kind and reason for the API's invalid_clicks and
-- invalid_impressions. Its ids join stored_event_ids_kv, so a redelivered invalid event is not
-- stored twice either, and its receive times the freshness watermark.
--
-- visitor_id: since this migration the aggregator writes the visitor id ingest computed (a
-- keyed hash of IP and user agent, see README "Privacy"); the DEFAULT in 0002 remains only for
-- rows written without one. The bloom-filter indexes let the aggregator's invalid-traffic
-- lookups (whether this visitor clicked or saw this ad in the last hour) skip the granules
-- without that visitor; parts written before this migration are not indexed and are read.

CREATE TABLE IF NOT EXISTS invalid_events
(
    event_id           UUID,
    ad_id              UUID,
    kind               LowCardinality(String),
    invalid_reason     LowCardinality(String),
    timestamp          DateTime64(3, 'UTC'),
    received_at        DateTime64(3, 'UTC'),
    client_ip          String,
    user_agent         String,
    visitor_id         UInt64,
    playback_time_secs Nullable(Float64),
    watched_percent    Nullable(Float64),
    schema_version     UInt16,
    stream_seq         UInt64,
    device_type        LowCardinality(String),
    browser            LowCardinality(String),
    country            LowCardinality(String),
    INDEX visitor_id_bloom visitor_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (ad_id, timestamp, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

ALTER TABLE click_events ADD INDEX IF NOT EXISTS visitor_id_bloom visitor_id TYPE bloom_filter(0.01) GRANULARITY 1;

ALTER TABLE impression_events ADD INDEX IF NOT EXISTS visitor_id_bloom visitor_id TYPE bloom_filter(0.01) GRANULARITY 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS invalid_event_ids_kv_mv TO stored_event_ids_kv AS
SELECT event_id, kind FROM invalid_events;

CREATE MATERIALIZED VIEW IF NOT EXISTS invalid_events_received_watermark_mv TO events_received_watermark AS
SELECT kind, max(received_at) AS newest_received_at
FROM invalid_events
GROUP BY kind;

CREATE TABLE IF NOT EXISTS invalid_events_per_minute
(
    ad_id          UUID,
    minute         DateTime('UTC'),
    kind           LowCardinality(String),
    invalid_reason LowCardinality(String),
    events         SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (ad_id, minute, kind, invalid_reason)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS invalid_events_per_hour
(
    ad_id          UUID,
    hour           DateTime('UTC'),
    kind           LowCardinality(String),
    invalid_reason LowCardinality(String),
    events         SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (ad_id, hour, kind, invalid_reason)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS invalid_events_per_day
(
    ad_id          UUID,
    day            DateTime('UTC'),
    kind           LowCardinality(String),
    invalid_reason LowCardinality(String),
    events         SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (ad_id, day, kind, invalid_reason)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS invalid_events_per_minute_mv TO invalid_events_per_minute AS
SELECT ad_id, toStartOfMinute(timestamp) AS minute, kind, invalid_reason, count() AS events
FROM invalid_events
GROUP BY ad_id, minute, kind, invalid_reason;

CREATE MATERIALIZED VIEW IF NOT EXISTS invalid_events_per_hour_mv TO invalid_events_per_hour AS
SELECT ad_id, toStartOfHour(timestamp) AS hour, kind, invalid_reason, count() AS events
FROM invalid_events
GROUP BY ad_id, hour, kind, invalid_reason;

CREATE MATERIALIZED VIEW IF NOT EXISTS invalid_events_per_day_mv TO invalid_events_per_day AS
SELECT ad_id, toStartOfDay(timestamp) AS day, kind, invalid_reason, count() AS events
FROM invalid_events
GROUP BY ad_id, day, kind, invalid_reason;
