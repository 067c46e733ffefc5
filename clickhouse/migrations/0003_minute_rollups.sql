-- Per ad per minute rollups, fed by materialized views on every insert into the raw tables.
-- Counters are sums; unique visitors are uniq states: merge them with uniqMerge, never add them.

CREATE TABLE IF NOT EXISTS click_events_per_minute
(
    ad_id                   UUID,
    minute                  DateTime('UTC'),
    clicks                  SimpleAggregateFunction(sum, UInt64),
    unique_visitors         AggregateFunction(uniq, UInt64),
    playback_time_secs_sum  SimpleAggregateFunction(sum, Float64),
    playback_count          SimpleAggregateFunction(sum, UInt64),
    watched_percent_sum     SimpleAggregateFunction(sum, Float64),
    watched_percent_count   SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (ad_id, minute)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_events_per_minute_mv TO click_events_per_minute AS
SELECT
    ad_id,
    toStartOfMinute(timestamp)               AS minute,
    count()                                  AS clicks,
    uniqState(visitor_id)                    AS unique_visitors,
    sum(ifNull(playback_time_secs, 0))       AS playback_time_secs_sum,
    count(playback_time_secs)                AS playback_count,
    sum(ifNull(watched_percent, 0))          AS watched_percent_sum,
    count(watched_percent)                   AS watched_percent_count
FROM click_events
GROUP BY ad_id, minute;

CREATE TABLE IF NOT EXISTS impression_events_per_minute
(
    ad_id           UUID,
    minute          DateTime('UTC'),
    impressions     SimpleAggregateFunction(sum, UInt64),
    unique_visitors AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (ad_id, minute)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS impression_events_per_minute_mv TO impression_events_per_minute AS
SELECT
    ad_id,
    toStartOfMinute(timestamp) AS minute,
    count()                    AS impressions,
    uniqState(visitor_id)      AS unique_visitors
FROM impression_events
GROUP BY ad_id, minute;
