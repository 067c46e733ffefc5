-- Since when the stream's messages are signed (Ads-Signature, EVENT_SIGNING_KEY): the first
-- stream sequence that must carry a signature. `aggregator migrate` records it once, as the
-- sequence after the last message the stream held then, so that messages published before
-- ingest signed (read again by a rebuild) still count, and every later one must be signed. A
-- new installation records 1: every message. The server assigns sequences, so no message can
-- claim to be older than it is.

CREATE TABLE IF NOT EXISTS event_signing
(
    signed_from_stream_seq UInt64,
    recorded_at            DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY tuple();
