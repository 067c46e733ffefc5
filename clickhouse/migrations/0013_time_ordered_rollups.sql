-- Minute and hour rollups sorted by time first (migration 0013).
--
-- Why: a window's edges read minute and hour rows of every ad at once (a ranking, every ad's
-- totals, the all-ads series). Sorted by (ad_id, time), those rows lie in every ad's stretch of
-- the table, so ClickHouse read and decoded the unique-visitor states of whole granules across
-- the month's partition (8 minutes of every ad 30 days ago: 80 ms). Sorted by the hour (minute
-- rollups) or UTC day (hour rollups) first, then ad_id and time, one hour's or day's rows of
-- every ad lie together, and one ad's rows of that hour or day too (the same 8 minutes: 5 ms).
-- The query service bounds the first key column as well as the time (`range::Rollup`), which
-- ClickHouse needs to use it. Day rollups keep (ad_id, day): they are small.
--
-- Granules: 256 rows for minute rollups and 64 for hour rollups. A read of one ad over many
-- hours (a +05:30 zone's series, an hourly series) finds a few of its rows in each hour's or
-- day's stretch and decodes the states of the whole granule around them: 256 rows read one ad's
-- 30 days of minutes in 72 ms where 1,024 took 100 ms, and reads every ad's edge as fast.
--
-- Each table is rebuilt once: a copy with the new sort key takes the rows, the two swap names,
-- and the old one is dropped. A sort key cannot be changed in place, nor a rebuild be written
-- as IF NOT EXISTS, so its statements run only while the table still has the old key
-- (`-- only if:`, see aggregator/src/migrate.rs), which keeps the file safe to re-apply,
-- including after a failure half-way. The view feeding the table is dropped first and made
-- again last: run this migration with no aggregator writing (`aggregator migrate`, then start
-- aggregators), or the events inserted meanwhile miss the rollup.

-- click_events_per_minute: (toStartOfHour(minute), ad_id, minute)
-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
DROP VIEW IF EXISTS click_events_per_minute_mv;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
CREATE TABLE IF NOT EXISTS click_events_per_minute_reordered AS click_events_per_minute
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (toStartOfHour(minute), ad_id, minute)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
TRUNCATE TABLE click_events_per_minute_reordered;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
INSERT INTO click_events_per_minute_reordered SELECT * FROM click_events_per_minute;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
EXCHANGE TABLES click_events_per_minute AND click_events_per_minute_reordered;

DROP TABLE IF EXISTS click_events_per_minute_reordered;

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

-- impression_events_per_minute: (toStartOfHour(minute), ad_id, minute)
-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
DROP VIEW IF EXISTS impression_events_per_minute_mv;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
CREATE TABLE IF NOT EXISTS impression_events_per_minute_reordered AS impression_events_per_minute
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (toStartOfHour(minute), ad_id, minute)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
TRUNCATE TABLE impression_events_per_minute_reordered;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
INSERT INTO impression_events_per_minute_reordered SELECT * FROM impression_events_per_minute;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
EXCHANGE TABLES impression_events_per_minute AND impression_events_per_minute_reordered;

DROP TABLE IF EXISTS impression_events_per_minute_reordered;

CREATE MATERIALIZED VIEW IF NOT EXISTS impression_events_per_minute_mv TO impression_events_per_minute AS
SELECT
    ad_id,
    toStartOfMinute(timestamp) AS minute,
    count()                    AS impressions,
    uniqState(visitor_id)      AS unique_visitors
FROM impression_events
GROUP BY ad_id, minute;

-- click_playback_per_minute: (toStartOfHour(minute), ad_id, minute)
-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_minute' AND startsWith(sorting_key, 'ad_id, ')
DROP VIEW IF EXISTS click_playback_per_minute_mv;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_minute' AND startsWith(sorting_key, 'ad_id, ')
CREATE TABLE IF NOT EXISTS click_playback_per_minute_reordered AS click_playback_per_minute
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (toStartOfHour(minute), ad_id, minute)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_minute' AND startsWith(sorting_key, 'ad_id, ')
TRUNCATE TABLE click_playback_per_minute_reordered;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_minute' AND startsWith(sorting_key, 'ad_id, ')
INSERT INTO click_playback_per_minute_reordered SELECT * FROM click_playback_per_minute;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_minute' AND startsWith(sorting_key, 'ad_id, ')
EXCHANGE TABLES click_playback_per_minute AND click_playback_per_minute_reordered;

DROP TABLE IF EXISTS click_playback_per_minute_reordered;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_playback_per_minute_mv TO click_playback_per_minute AS
SELECT ad_id, toStartOfMinute(timestamp) AS minute, quantilesTDigestState(0.5, 0.95)(playback_time_secs) AS playback_time_secs_quantiles
FROM click_events
WHERE playback_time_secs IS NOT NULL
GROUP BY ad_id, minute;

-- invalid_events_per_minute: (toStartOfHour(minute), ad_id, minute, kind, invalid_reason)
-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'invalid_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
DROP VIEW IF EXISTS invalid_events_per_minute_mv;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'invalid_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
CREATE TABLE IF NOT EXISTS invalid_events_per_minute_reordered AS invalid_events_per_minute
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (toStartOfHour(minute), ad_id, minute, kind, invalid_reason)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'invalid_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
TRUNCATE TABLE invalid_events_per_minute_reordered;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'invalid_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
INSERT INTO invalid_events_per_minute_reordered SELECT * FROM invalid_events_per_minute;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'invalid_events_per_minute' AND startsWith(sorting_key, 'ad_id, ')
EXCHANGE TABLES invalid_events_per_minute AND invalid_events_per_minute_reordered;

DROP TABLE IF EXISTS invalid_events_per_minute_reordered;

CREATE MATERIALIZED VIEW IF NOT EXISTS invalid_events_per_minute_mv TO invalid_events_per_minute AS
SELECT ad_id, toStartOfMinute(timestamp) AS minute, kind, invalid_reason, count() AS events
FROM invalid_events
GROUP BY ad_id, minute, kind, invalid_reason;

-- click_events_per_hour: (toStartOfDay(hour), ad_id, hour)
-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
DROP VIEW IF EXISTS click_events_per_hour_mv;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
CREATE TABLE IF NOT EXISTS click_events_per_hour_reordered AS click_events_per_hour
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (toStartOfDay(hour), ad_id, hour)
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 1000;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
TRUNCATE TABLE click_events_per_hour_reordered;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
INSERT INTO click_events_per_hour_reordered SELECT * FROM click_events_per_hour;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
EXCHANGE TABLES click_events_per_hour AND click_events_per_hour_reordered;

DROP TABLE IF EXISTS click_events_per_hour_reordered;

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

-- impression_events_per_hour: (toStartOfDay(hour), ad_id, hour)
-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
DROP VIEW IF EXISTS impression_events_per_hour_mv;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
CREATE TABLE IF NOT EXISTS impression_events_per_hour_reordered AS impression_events_per_hour
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (toStartOfDay(hour), ad_id, hour)
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 1000;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
TRUNCATE TABLE impression_events_per_hour_reordered;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
INSERT INTO impression_events_per_hour_reordered SELECT * FROM impression_events_per_hour;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
EXCHANGE TABLES impression_events_per_hour AND impression_events_per_hour_reordered;

DROP TABLE IF EXISTS impression_events_per_hour_reordered;

CREATE MATERIALIZED VIEW IF NOT EXISTS impression_events_per_hour_mv TO impression_events_per_hour AS
SELECT
    ad_id,
    toStartOfHour(timestamp) AS hour,
    count() AS impressions,
    uniqState(visitor_id) AS unique_visitors
FROM impression_events
GROUP BY ad_id, hour;

-- click_playback_per_hour: (toStartOfDay(hour), ad_id, hour)
-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_hour' AND startsWith(sorting_key, 'ad_id, ')
DROP VIEW IF EXISTS click_playback_per_hour_mv;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_hour' AND startsWith(sorting_key, 'ad_id, ')
CREATE TABLE IF NOT EXISTS click_playback_per_hour_reordered AS click_playback_per_hour
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (toStartOfDay(hour), ad_id, hour)
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 1000;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_hour' AND startsWith(sorting_key, 'ad_id, ')
TRUNCATE TABLE click_playback_per_hour_reordered;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_hour' AND startsWith(sorting_key, 'ad_id, ')
INSERT INTO click_playback_per_hour_reordered SELECT * FROM click_playback_per_hour;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_playback_per_hour' AND startsWith(sorting_key, 'ad_id, ')
EXCHANGE TABLES click_playback_per_hour AND click_playback_per_hour_reordered;

DROP TABLE IF EXISTS click_playback_per_hour_reordered;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_playback_per_hour_mv TO click_playback_per_hour AS
SELECT ad_id, toStartOfHour(timestamp) AS hour, quantilesTDigestState(0.5, 0.95)(playback_time_secs) AS playback_time_secs_quantiles
FROM click_events
WHERE playback_time_secs IS NOT NULL
GROUP BY ad_id, hour;

-- invalid_events_per_hour: (toStartOfDay(hour), ad_id, hour, kind, invalid_reason)
-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'invalid_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
DROP VIEW IF EXISTS invalid_events_per_hour_mv;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'invalid_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
CREATE TABLE IF NOT EXISTS invalid_events_per_hour_reordered AS invalid_events_per_hour
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (toStartOfDay(hour), ad_id, hour, kind, invalid_reason)
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 1000;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'invalid_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
TRUNCATE TABLE invalid_events_per_hour_reordered;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'invalid_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
INSERT INTO invalid_events_per_hour_reordered SELECT * FROM invalid_events_per_hour;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'invalid_events_per_hour' AND startsWith(sorting_key, 'ad_id, ')
EXCHANGE TABLES invalid_events_per_hour AND invalid_events_per_hour_reordered;

DROP TABLE IF EXISTS invalid_events_per_hour_reordered;

CREATE MATERIALIZED VIEW IF NOT EXISTS invalid_events_per_hour_mv TO invalid_events_per_hour AS
SELECT ad_id, toStartOfHour(timestamp) AS hour, kind, invalid_reason, count() AS events
FROM invalid_events
GROUP BY ad_id, hour, kind, invalid_reason;

-- click_audience_per_hour: (toStartOfDay(hour), ad_id, hour, device_type, browser, country)
-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_audience_per_hour' AND startsWith(sorting_key, 'ad_id, ')
DROP VIEW IF EXISTS click_audience_per_hour_mv;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_audience_per_hour' AND startsWith(sorting_key, 'ad_id, ')
CREATE TABLE IF NOT EXISTS click_audience_per_hour_reordered AS click_audience_per_hour
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (toStartOfDay(hour), ad_id, hour, device_type, browser, country)
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 1000;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_audience_per_hour' AND startsWith(sorting_key, 'ad_id, ')
TRUNCATE TABLE click_audience_per_hour_reordered;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_audience_per_hour' AND startsWith(sorting_key, 'ad_id, ')
INSERT INTO click_audience_per_hour_reordered SELECT * FROM click_audience_per_hour;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_audience_per_hour' AND startsWith(sorting_key, 'ad_id, ')
EXCHANGE TABLES click_audience_per_hour AND click_audience_per_hour_reordered;

DROP TABLE IF EXISTS click_audience_per_hour_reordered;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_audience_per_hour_mv TO click_audience_per_hour AS
SELECT ad_id, toStartOfHour(timestamp) AS hour, device_type, browser, country, count() AS clicks, uniqState(visitor_id) AS unique_visitors
FROM click_events
GROUP BY ad_id, hour, device_type, browser, country;

-- impression_audience_per_hour: (toStartOfDay(hour), ad_id, hour, device_type, browser, country)
-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_audience_per_hour' AND startsWith(sorting_key, 'ad_id, ')
DROP VIEW IF EXISTS impression_audience_per_hour_mv;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_audience_per_hour' AND startsWith(sorting_key, 'ad_id, ')
CREATE TABLE IF NOT EXISTS impression_audience_per_hour_reordered AS impression_audience_per_hour
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (toStartOfDay(hour), ad_id, hour, device_type, browser, country)
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 1000;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_audience_per_hour' AND startsWith(sorting_key, 'ad_id, ')
TRUNCATE TABLE impression_audience_per_hour_reordered;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_audience_per_hour' AND startsWith(sorting_key, 'ad_id, ')
INSERT INTO impression_audience_per_hour_reordered SELECT * FROM impression_audience_per_hour;

-- only if: SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_audience_per_hour' AND startsWith(sorting_key, 'ad_id, ')
EXCHANGE TABLES impression_audience_per_hour AND impression_audience_per_hour_reordered;

DROP TABLE IF EXISTS impression_audience_per_hour_reordered;

CREATE MATERIALIZED VIEW IF NOT EXISTS impression_audience_per_hour_mv TO impression_audience_per_hour AS
SELECT ad_id, toStartOfHour(timestamp) AS hour, device_type, browser, country, count() AS impressions, uniqState(visitor_id) AS unique_visitors
FROM impression_events
GROUP BY ad_id, hour, device_type, browser, country;
