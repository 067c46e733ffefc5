-- One row per accepted event, written only by the aggregator.
--
-- visitor_id is the identity behind every "unique" metric: a hash of the client IP and user
-- agent, computed here so that rollups and ad-hoc SQL agree on it.
-- stream_seq is the JetStream sequence the row came from, to trace a row back to its message.
-- non_replicated_deduplication_window makes a retried insert with the same
-- insert_deduplication_token a no-op, here and in the rollups below.

CREATE TABLE IF NOT EXISTS click_events
(
    event_id           UUID,
    ad_id              UUID,
    timestamp          DateTime64(3, 'UTC'),
    received_at        DateTime64(3, 'UTC'),
    client_ip          String,
    user_agent         String,
    visitor_id         UInt64 DEFAULT cityHash64(client_ip, user_agent),
    playback_time_secs Nullable(Float64),
    watched_percent    Nullable(Float64),
    schema_version     UInt16,
    stream_seq         UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (ad_id, timestamp, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS impression_events
(
    event_id       UUID,
    ad_id          UUID,
    timestamp      DateTime64(3, 'UTC'),
    received_at    DateTime64(3, 'UTC'),
    client_ip      String,
    user_agent     String,
    visitor_id     UInt64 DEFAULT cityHash64(client_ip, user_agent),
    schema_version UInt16,
    stream_seq     UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (ad_id, timestamp, event_id)
SETTINGS non_replicated_deduplication_window = 1000;
