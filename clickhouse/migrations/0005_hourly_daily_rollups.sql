-- Per ad per hour and per ad per day rollups, the same columns as the per-minute ones.
--
-- Why: a 30-day question over per-minute rows reads up to 43,200 rows per ad and merges as
-- many unique-visitor states. The query service answers a window from the coarsest rollups
-- that fit inside it (whole days, then whole hours at the edges, then minutes), which gives the
-- same numbers from about a hundred rows per ad. Days are UTC days.
--
-- index_granularity = 256 (not 8,192): one ad's few rows are read as a few small granules,
-- since unique-visitor states are heavy to read (one ad's 30 days read 33x fewer bytes).
--
-- Each rollup is fed straight from the raw table by its own materialized view, so the three
-- rollups always hold the same events. On a database that already holds events, a new rollup
-- is filled from the raw table once (while it is still empty), before its view exists: run
-- this migration with no aggregator writing (`aggregator migrate`, then start aggregators).

CREATE TABLE IF NOT EXISTS click_events_per_hour
(
    ad_id                   UUID,
    hour                    DateTime('UTC'),
    clicks                  SimpleAggregateFunction(sum, UInt64),
    unique_visitors         AggregateFunction(uniq, UInt64),
    playback_time_secs_sum  SimpleAggregateFunction(sum, Float64),
    playback_count          SimpleAggregateFunction(sum, UInt64),
    watched_percent_sum     SimpleAggregateFunction(sum, Float64),
    watched_percent_count   SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (ad_id, hour)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS click_events_per_day
(
    ad_id                   UUID,
    day                     DateTime('UTC'),
    clicks                  SimpleAggregateFunction(sum, UInt64),
    unique_visitors         AggregateFunction(uniq, UInt64),
    playback_time_secs_sum  SimpleAggregateFunction(sum, Float64),
    playback_count          SimpleAggregateFunction(sum, UInt64),
    watched_percent_sum     SimpleAggregateFunction(sum, Float64),
    watched_percent_count   SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (ad_id, day)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS impression_events_per_hour
(
    ad_id           UUID,
    hour            DateTime('UTC'),
    impressions     SimpleAggregateFunction(sum, UInt64),
    unique_visitors AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (ad_id, hour)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS impression_events_per_day
(
    ad_id           UUID,
    day             DateTime('UTC'),
    impressions     SimpleAggregateFunction(sum, UInt64),
    unique_visitors AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (ad_id, day)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

-- The one-time fill: only while the rollup's view does not exist yet and the rollup is empty.

INSERT INTO click_events_per_hour
SELECT
    ad_id,
    toStartOfHour(timestamp) AS hour,
    count() AS clicks,
    uniqState(visitor_id) AS unique_visitors,
    sum(ifNull(playback_time_secs, 0)) AS playback_time_secs_sum,
    count(playback_time_secs) AS playback_count,
    sum(ifNull(watched_percent, 0)) AS watched_percent_sum,
    count(watched_percent) AS watched_percent_count
FROM click_events
WHERE (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_hour_mv') = 0
  AND (SELECT count() FROM click_events_per_hour) = 0
GROUP BY ad_id, hour;

INSERT INTO click_events_per_day
SELECT
    ad_id,
    toStartOfDay(timestamp) AS day,
    count() AS clicks,
    uniqState(visitor_id) AS unique_visitors,
    sum(ifNull(playback_time_secs, 0)) AS playback_time_secs_sum,
    count(playback_time_secs) AS playback_count,
    sum(ifNull(watched_percent, 0)) AS watched_percent_sum,
    count(watched_percent) AS watched_percent_count
FROM click_events
WHERE (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_day_mv') = 0
  AND (SELECT count() FROM click_events_per_day) = 0
GROUP BY ad_id, day;

INSERT INTO impression_events_per_hour
SELECT
    ad_id,
    toStartOfHour(timestamp) AS hour,
    count() AS impressions,
    uniqState(visitor_id) AS unique_visitors
FROM impression_events
WHERE (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_hour_mv') = 0
  AND (SELECT count() FROM impression_events_per_hour) = 0
GROUP BY ad_id, hour;

INSERT INTO impression_events_per_day
SELECT
    ad_id,
    toStartOfDay(timestamp) AS day,
    count() AS impressions,
    uniqState(visitor_id) AS unique_visitors
FROM impression_events
WHERE (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_day_mv') = 0
  AND (SELECT count() FROM impression_events_per_day) = 0
GROUP BY ad_id, day;

-- From now on every insert into a raw table reaches each rollup.

CREATE MATERIALIZED VIEW IF NOT EXISTS click_events_per_hour_mv TO click_events_per_hour AS
SELECT
    ad_id,
    toStartOfHour(timestamp) AS hour,
    count() AS clicks,
    uniqState(visitor_id) AS unique_visitors,
    sum(ifNull(playback_time_secs, 0)) AS playback_time_secs_sum,
    count(playback_time_secs) AS playback_count,
    sum(ifNull(watched_percent, 0)) AS watched_percent_sum,
    count(watched_percent) AS watched_percent_count
FROM click_events
GROUP BY ad_id, hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_events_per_day_mv TO click_events_per_day AS
SELECT
    ad_id,
    toStartOfDay(timestamp) AS day,
    count() AS clicks,
    uniqState(visitor_id) AS unique_visitors,
    sum(ifNull(playback_time_secs, 0)) AS playback_time_secs_sum,
    count(playback_time_secs) AS playback_count,
    sum(ifNull(watched_percent, 0)) AS watched_percent_sum,
    count(watched_percent) AS watched_percent_count
FROM click_events
GROUP BY ad_id, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS impression_events_per_hour_mv TO impression_events_per_hour AS
SELECT
    ad_id,
    toStartOfHour(timestamp) AS hour,
    count() AS impressions,
    uniqState(visitor_id) AS unique_visitors
FROM impression_events
GROUP BY ad_id, hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS impression_events_per_day_mv TO impression_events_per_day AS
SELECT
    ad_id,
    toStartOfDay(timestamp) AS day,
    count() AS impressions,
    uniqState(visitor_id) AS unique_visitors
FROM impression_events
GROUP BY ad_id, day;
