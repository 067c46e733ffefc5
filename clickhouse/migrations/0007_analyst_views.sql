-- Readable views over the rollups, for analysts (docs/sql.md shows how to query them).
--
-- One row per ad per UTC minute, hour or day that had a click or an impression, with clicks and
-- impressions side by side, unique visitors merged and the ratios computed, so that nobody has
-- to know about uniq states or SimpleAggregateFunction columns to read a number.
--
-- Why GROUP BY: the rollups are AggregatingMergeTree tables, and a bucket may still be spread
-- over several rows (parts not merged yet). Each view merges them at read time, so its numbers
-- are final whatever the state of the background merges.
--
-- Why UNION ALL and not a JOIN: a filter on ad_id and the bucket reaches both rollups' primary
-- keys through UNION ALL and GROUP BY, and a bucket with only clicks or only impressions needs
-- no outer-join defaults. Each row of the union says which rollup it came from (`kind`), so
-- that click and impression visitors are merged apart.
--
-- The views hold no data and only name the rollups: `aggregator rebuild` drops and recreates
-- the rollups under them, and they read the new tables (they are not in rebuild's DERIVED
-- list). CREATE OR REPLACE, so that every start re-applies the current definition.
--
-- Ratios are NULL when their denominator is 0 (as in the API): a CTR without impressions is
-- undefined, not 0. To total several buckets, add clicks and impressions, and divide the sums
-- (playback_time_secs_sum / playback_count); never add unique_* or average averages.

-- minute: DateTime('UTC'), the minute's start.
CREATE OR REPLACE VIEW ad_metrics_per_minute AS
SELECT
    ad_id,
    bucket AS minute,
    sum(click_count)                                       AS clicks,
    uniqMergeIf(visitors, kind = 'click')                  AS unique_clicks,
    sum(impression_count)                                  AS impressions,
    uniqMergeIf(visitors, kind = 'impression')             AS unique_impressions,
    clicks / nullIf(impressions, 0)                        AS ctr,
    sum(playback_sum)                                      AS playback_time_secs_sum,
    sum(playback_n)                                        AS playback_count,
    playback_time_secs_sum / nullIf(playback_count, 0)     AS avg_playback_time_secs,
    sum(watched_sum)                                       AS watched_percent_sum,
    sum(watched_n)                                         AS watched_percent_count,
    watched_percent_sum / nullIf(watched_percent_count, 0) AS avg_watched_percent
FROM
(
    SELECT
        'click' AS kind, ad_id, minute AS bucket,
        toUInt64(clicks) AS click_count, toUInt64(0) AS impression_count, unique_visitors AS visitors,
        toFloat64(playback_time_secs_sum) AS playback_sum, toUInt64(playback_count) AS playback_n,
        toFloat64(watched_percent_sum) AS watched_sum, toUInt64(watched_percent_count) AS watched_n
    FROM click_events_per_minute
    UNION ALL
    SELECT
        'impression', ad_id, minute,
        toUInt64(0), toUInt64(impressions), unique_visitors,
        toFloat64(0), toUInt64(0),
        toFloat64(0), toUInt64(0)
    FROM impression_events_per_minute
)
GROUP BY ad_id, minute;

-- hour: DateTime('UTC'), the hour's start.
CREATE OR REPLACE VIEW ad_metrics_per_hour AS
SELECT
    ad_id,
    bucket AS hour,
    sum(click_count)                                       AS clicks,
    uniqMergeIf(visitors, kind = 'click')                  AS unique_clicks,
    sum(impression_count)                                  AS impressions,
    uniqMergeIf(visitors, kind = 'impression')             AS unique_impressions,
    clicks / nullIf(impressions, 0)                        AS ctr,
    sum(playback_sum)                                      AS playback_time_secs_sum,
    sum(playback_n)                                        AS playback_count,
    playback_time_secs_sum / nullIf(playback_count, 0)     AS avg_playback_time_secs,
    sum(watched_sum)                                       AS watched_percent_sum,
    sum(watched_n)                                         AS watched_percent_count,
    watched_percent_sum / nullIf(watched_percent_count, 0) AS avg_watched_percent
FROM
(
    SELECT
        'click' AS kind, ad_id, hour AS bucket,
        toUInt64(clicks) AS click_count, toUInt64(0) AS impression_count, unique_visitors AS visitors,
        toFloat64(playback_time_secs_sum) AS playback_sum, toUInt64(playback_count) AS playback_n,
        toFloat64(watched_percent_sum) AS watched_sum, toUInt64(watched_percent_count) AS watched_n
    FROM click_events_per_hour
    UNION ALL
    SELECT
        'impression', ad_id, hour,
        toUInt64(0), toUInt64(impressions), unique_visitors,
        toFloat64(0), toUInt64(0),
        toFloat64(0), toUInt64(0)
    FROM impression_events_per_hour
)
GROUP BY ad_id, hour;

-- day: the UTC day, as a Date (`WHERE day = '2026-01-31'`, `day >= toDate(now(), 'UTC') - 7`).
CREATE OR REPLACE VIEW ad_metrics_per_day AS
SELECT
    ad_id,
    toDate(bucket) AS day,
    sum(click_count)                                       AS clicks,
    uniqMergeIf(visitors, kind = 'click')                  AS unique_clicks,
    sum(impression_count)                                  AS impressions,
    uniqMergeIf(visitors, kind = 'impression')             AS unique_impressions,
    clicks / nullIf(impressions, 0)                        AS ctr,
    sum(playback_sum)                                      AS playback_time_secs_sum,
    sum(playback_n)                                        AS playback_count,
    playback_time_secs_sum / nullIf(playback_count, 0)     AS avg_playback_time_secs,
    sum(watched_sum)                                       AS watched_percent_sum,
    sum(watched_n)                                         AS watched_percent_count,
    watched_percent_sum / nullIf(watched_percent_count, 0) AS avg_watched_percent
FROM
(
    SELECT
        'click' AS kind, ad_id, day AS bucket,
        toUInt64(clicks) AS click_count, toUInt64(0) AS impression_count, unique_visitors AS visitors,
        toFloat64(playback_time_secs_sum) AS playback_sum, toUInt64(playback_count) AS playback_n,
        toFloat64(watched_percent_sum) AS watched_sum, toUInt64(watched_percent_count) AS watched_n
    FROM click_events_per_day
    UNION ALL
    SELECT
        'impression', ad_id, day,
        toUInt64(0), toUInt64(impressions), unique_visitors,
        toFloat64(0), toUInt64(0),
        toFloat64(0), toUInt64(0)
    FROM impression_events_per_day
)
GROUP BY ad_id, day;

-- The day view with each ad's title and campaign from the catalog (`ads FINAL`: its latest
-- version). An ad missing from the catalog keeps its row, with empty title and campaign.
CREATE OR REPLACE VIEW ad_metrics_per_day_named AS
SELECT
    m.day                    AS day,
    m.ad_id                  AS ad_id,
    a.title                  AS title,
    a.campaign_id            AS campaign_id,
    m.clicks                 AS clicks,
    m.unique_clicks          AS unique_clicks,
    m.impressions            AS impressions,
    m.unique_impressions     AS unique_impressions,
    m.ctr                    AS ctr,
    m.avg_playback_time_secs AS avg_playback_time_secs,
    m.avg_watched_percent    AS avg_watched_percent
FROM ad_metrics_per_day AS m
LEFT JOIN (SELECT id, title, campaign_id FROM ads FINAL) AS a ON a.id = m.ad_id;
