-- Playback time percentiles (p50, p95) per ad per minute, hour and UTC day, for the clicks that
-- reported a playback time. t-digest states: merge them with quantilesTDigestMerge(0.5, 0.95),
-- which is exact for small sets and within about 1 % beyond.
--
-- Separate tables rather than new columns on the click rollups: migration 0005 fills those
-- rollups with column lists that must keep matching the tables.
--
-- On a database that already holds clicks, each table is filled from click_events once (while
-- it is still empty), before its view exists: run it with no aggregator writing.

CREATE TABLE IF NOT EXISTS click_playback_per_minute
(
    ad_id                         UUID,
    minute                        DateTime('UTC'),
    playback_time_secs_quantiles  AggregateFunction(quantilesTDigest(0.5, 0.95), Nullable(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (ad_id, minute)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS click_playback_per_hour
(
    ad_id                         UUID,
    hour                          DateTime('UTC'),
    playback_time_secs_quantiles  AggregateFunction(quantilesTDigest(0.5, 0.95), Nullable(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (ad_id, hour)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS click_playback_per_day
(
    ad_id                         UUID,
    day                           DateTime('UTC'),
    playback_time_secs_quantiles  AggregateFunction(quantilesTDigest(0.5, 0.95), Nullable(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (ad_id, day)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

-- The one-time fill: only while the table's view does not exist yet and the table is empty.

INSERT INTO click_playback_per_minute
SELECT ad_id, toStartOfMinute(timestamp) AS minute, quantilesTDigestState(0.5, 0.95)(playback_time_secs) AS playback_time_secs_quantiles
FROM click_events
WHERE playback_time_secs IS NOT NULL
  AND (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_minute_mv') = 0
  AND (SELECT count() FROM click_playback_per_minute) = 0
GROUP BY ad_id, minute;

INSERT INTO click_playback_per_hour
SELECT ad_id, toStartOfHour(timestamp) AS hour, quantilesTDigestState(0.5, 0.95)(playback_time_secs) AS playback_time_secs_quantiles
FROM click_events
WHERE playback_time_secs IS NOT NULL
  AND (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_hour_mv') = 0
  AND (SELECT count() FROM click_playback_per_hour) = 0
GROUP BY ad_id, hour;

INSERT INTO click_playback_per_day
SELECT ad_id, toStartOfDay(timestamp) AS day, quantilesTDigestState(0.5, 0.95)(playback_time_secs) AS playback_time_secs_quantiles
FROM click_events
WHERE playback_time_secs IS NOT NULL
  AND (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_day_mv') = 0
  AND (SELECT count() FROM click_playback_per_day) = 0
GROUP BY ad_id, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_playback_per_minute_mv TO click_playback_per_minute AS
SELECT ad_id, toStartOfMinute(timestamp) AS minute, quantilesTDigestState(0.5, 0.95)(playback_time_secs) AS playback_time_secs_quantiles
FROM click_events
WHERE playback_time_secs IS NOT NULL
GROUP BY ad_id, minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_playback_per_hour_mv TO click_playback_per_hour AS
SELECT ad_id, toStartOfHour(timestamp) AS hour, quantilesTDigestState(0.5, 0.95)(playback_time_secs) AS playback_time_secs_quantiles
FROM click_events
WHERE playback_time_secs IS NOT NULL
GROUP BY ad_id, hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_playback_per_day_mv TO click_playback_per_day AS
SELECT ad_id, toStartOfDay(timestamp) AS day, quantilesTDigestState(0.5, 0.95)(playback_time_secs) AS playback_time_secs_quantiles
FROM click_events
WHERE playback_time_secs IS NOT NULL
GROUP BY ad_id, day;
