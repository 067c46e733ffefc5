-- Breakdowns by device type, browser and country (migration 0010).
--
-- The raw tables get the three columns (ingest derives device type and browser from the user
-- agent, see schemas/src/audience.rs; the client may send a country). Rows stored before hold
-- empty strings, shown as "unknown". Rollups per ad, hour or UTC day, and the three columns
-- answer breakdowns; the minutes at a window's edges are read from the raw tables.
--
-- On a database that already holds events, each rollup is filled from the raw table once
-- (while it is still empty), before its view exists: run it with no aggregator writing.

ALTER TABLE click_events ADD COLUMN IF NOT EXISTS device_type LowCardinality(String) DEFAULT '';
ALTER TABLE click_events ADD COLUMN IF NOT EXISTS browser LowCardinality(String) DEFAULT '';
ALTER TABLE click_events ADD COLUMN IF NOT EXISTS country LowCardinality(String) DEFAULT '';

ALTER TABLE impression_events ADD COLUMN IF NOT EXISTS device_type LowCardinality(String) DEFAULT '';
ALTER TABLE impression_events ADD COLUMN IF NOT EXISTS browser LowCardinality(String) DEFAULT '';
ALTER TABLE impression_events ADD COLUMN IF NOT EXISTS country LowCardinality(String) DEFAULT '';

CREATE TABLE IF NOT EXISTS click_audience_per_hour
(
    ad_id            UUID,
    hour             DateTime('UTC'),
    device_type      LowCardinality(String),
    browser          LowCardinality(String),
    country          LowCardinality(String),
    clicks           SimpleAggregateFunction(sum, UInt64),
    unique_visitors  AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (ad_id, hour, device_type, browser, country)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS click_audience_per_day
(
    ad_id            UUID,
    day              DateTime('UTC'),
    device_type      LowCardinality(String),
    browser          LowCardinality(String),
    country          LowCardinality(String),
    clicks           SimpleAggregateFunction(sum, UInt64),
    unique_visitors  AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (ad_id, day, device_type, browser, country)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS impression_audience_per_hour
(
    ad_id            UUID,
    hour             DateTime('UTC'),
    device_type      LowCardinality(String),
    browser          LowCardinality(String),
    country          LowCardinality(String),
    impressions      SimpleAggregateFunction(sum, UInt64),
    unique_visitors  AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (ad_id, hour, device_type, browser, country)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS impression_audience_per_day
(
    ad_id            UUID,
    day              DateTime('UTC'),
    device_type      LowCardinality(String),
    browser          LowCardinality(String),
    country          LowCardinality(String),
    impressions      SimpleAggregateFunction(sum, UInt64),
    unique_visitors  AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (ad_id, day, device_type, browser, country)
SETTINGS index_granularity = 256, non_replicated_deduplication_window = 1000;

-- The one-time fill: only while the rollup's view does not exist yet and the rollup is empty.

INSERT INTO click_audience_per_hour
SELECT ad_id, toStartOfHour(timestamp) AS hour, device_type, browser, country, count() AS clicks, uniqState(visitor_id) AS unique_visitors
FROM click_events
WHERE (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_audience_per_hour_mv') = 0
  AND (SELECT count() FROM click_audience_per_hour) = 0
GROUP BY ad_id, hour, device_type, browser, country;

INSERT INTO click_audience_per_day
SELECT ad_id, toStartOfDay(timestamp) AS day, device_type, browser, country, count() AS clicks, uniqState(visitor_id) AS unique_visitors
FROM click_events
WHERE (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'click_audience_per_day_mv') = 0
  AND (SELECT count() FROM click_audience_per_day) = 0
GROUP BY ad_id, day, device_type, browser, country;

INSERT INTO impression_audience_per_hour
SELECT ad_id, toStartOfHour(timestamp) AS hour, device_type, browser, country, count() AS impressions, uniqState(visitor_id) AS unique_visitors
FROM impression_events
WHERE (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_audience_per_hour_mv') = 0
  AND (SELECT count() FROM impression_audience_per_hour) = 0
GROUP BY ad_id, hour, device_type, browser, country;

INSERT INTO impression_audience_per_day
SELECT ad_id, toStartOfDay(timestamp) AS day, device_type, browser, country, count() AS impressions, uniqState(visitor_id) AS unique_visitors
FROM impression_events
WHERE (SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'impression_audience_per_day_mv') = 0
  AND (SELECT count() FROM impression_audience_per_day) = 0
GROUP BY ad_id, day, device_type, browser, country;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_audience_per_hour_mv TO click_audience_per_hour AS
SELECT ad_id, toStartOfHour(timestamp) AS hour, device_type, browser, country, count() AS clicks, uniqState(visitor_id) AS unique_visitors
FROM click_events
GROUP BY ad_id, hour, device_type, browser, country;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_audience_per_day_mv TO click_audience_per_day AS
SELECT ad_id, toStartOfDay(timestamp) AS day, device_type, browser, country, count() AS clicks, uniqState(visitor_id) AS unique_visitors
FROM click_events
GROUP BY ad_id, day, device_type, browser, country;

CREATE MATERIALIZED VIEW IF NOT EXISTS impression_audience_per_hour_mv TO impression_audience_per_hour AS
SELECT ad_id, toStartOfHour(timestamp) AS hour, device_type, browser, country, count() AS impressions, uniqState(visitor_id) AS unique_visitors
FROM impression_events
GROUP BY ad_id, hour, device_type, browser, country;

CREATE MATERIALIZED VIEW IF NOT EXISTS impression_audience_per_day_mv TO impression_audience_per_day AS
SELECT ad_id, toStartOfDay(timestamp) AS day, device_type, browser, country, count() AS impressions, uniqState(visitor_id) AS unique_visitors
FROM impression_events
GROUP BY ad_id, day, device_type, browser, country;
