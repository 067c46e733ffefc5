-- Every stored event id, ordered by id so that the aggregator can look a whole batch up by
-- primary key before inserting it. This is how an event is recognised when it comes back:
-- a message redelivered after an aggregator crash, or a client retry that reached the stream
-- after JetStream's duplicate window. Clicks and impressions share one id namespace, as they
-- do in JetStream (Nats-Msg-Id).

CREATE TABLE IF NOT EXISTS stored_event_ids
(
    event_id UUID,
    kind     LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY event_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_event_ids_mv TO stored_event_ids AS
SELECT event_id, 'click' AS kind FROM click_events;

CREATE MATERIALIZED VIEW IF NOT EXISTS impression_event_ids_mv TO stored_event_ids AS
SELECT event_id, 'impression' AS kind FROM impression_events;
