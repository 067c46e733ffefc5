//! Dead letters: stream messages that can never become rows (bad JSON, an unknown schema
//! version, an ad that does not exist, a row ClickHouse refuses) are copied to a stream of their own, with the original
//! headers plus the reason, and only then terminated in the main stream. The consumer never
//! blocks on them and nothing is silently dropped; `aggregator dead-letters` lists them and
//! re-drives them after a fix.
//!
//! Wire protocol: NATS JetStream. Dead letters go to `<prefix>.<reason>` (e.g.
//! `ads.dead-letters.unknown_ad`) in stream `AD_EVENTS_DLQ`, payload unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::header::HeaderMap;
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::{self, stream};
use serde::Serialize;

pub const REASON_HEADER: &str = "Dead-Letter-Reason";
pub const DETAIL_HEADER: &str = "Dead-Letter-Detail";
pub const ORIGINAL_SUBJECT_HEADER: &str = "Dead-Letter-Original-Subject";
pub const ORIGINAL_SEQUENCE_HEADER: &str = "Dead-Letter-Original-Sequence";
pub const ORIGINAL_MSG_ID_HEADER: &str = "Dead-Letter-Original-Msg-Id";

/// Why a message can never become a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not signed with `EVENT_SIGNING_KEY` (or the signature does not match): not ingest's.
    BadSignature,
    BadJson,
    UnknownSchemaVersion,
    UnknownAd,
    /// ClickHouse refuses an event's row for good (see [`crate::error`]); the detail is its error.
    RejectedByClickhouse,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadSignature => "bad_signature",
            Reason::BadJson => "bad_json",
            Reason::UnknownSchemaVersion => "unknown_schema_version",
            Reason::UnknownAd => "unknown_ad",
            Reason::RejectedByClickhouse => "rejected_by_clickhouse",
        }
    }
}

/// Where dead letters go.
#[derive(Debug, Clone, clap::Args)]
pub struct DeadLetterArgs {
    /// Stream holding messages the aggregator could not count, until re-driven.
    #[arg(long, env = "DEAD_LETTER_STREAM", default_value = "AD_EVENTS_DLQ")]
    pub dead_letter_stream: String,
    /// Subject prefix of dead letters (must not fall under NATS_SUBJECT_PREFIX).
    #[arg(long, env = "DEAD_LETTER_SUBJECT_PREFIX", default_value = "ads.dead-letters")]
    pub dead_letter_subject_prefix: String,
    /// How long a dead letter is kept for someone to fix its cause and re-drive it; older ones
    /// are deleted. `AggregatorDeadLetters` alerts within minutes of one arriving.
    #[arg(long, env = "DEAD_LETTER_MAX_AGE_SECS", default_value_t = 30 * 86_400)]
    pub dead_letter_max_age_secs: u64,
}

pub async fn ensure_stream(
    js: &jetstream::Context,
    args: &DeadLetterArgs,
    replicas: usize,
) -> Result<(), async_nats::Error> {
    js.create_or_update_stream(stream::Config {
        name: args.dead_letter_stream.clone(),
        num_replicas: replicas,
        subjects: vec![format!("{}.>", args.dead_letter_subject_prefix)],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(args.dead_letter_max_age_secs),
        description: Some("Ad events the aggregator could not count, with the reason; re-drive after a fix".into()),
        ..Default::default()
    })
    .await?;
    Ok(())
}

#[derive(Clone)]
pub struct DeadLetters {
    js: jetstream::Context,
    subject_prefix: String,
}

impl DeadLetters {
    pub fn new(js: jetstream::Context, args: &DeadLetterArgs) -> Self {
        Self { js, subject_prefix: args.dead_letter_subject_prefix.clone() }
    }

    /// Stores a copy of `message` with the reason; `Ok` once JetStream acknowledged it.
    pub async fn send(
        &self,
        message: &jetstream::Message,
        reason: Reason,
        detail: &str,
    ) -> Result<(), async_nats::Error> {
        let origin = message.info().ok().map(|info| (info.stream.to_owned(), info.stream_sequence));
        let mut headers = message.headers.clone().unwrap_or_default();
        // The letter gets an id of its own: keeping the event's id would make the dead-letter
        // stream drop a second letter for the same event (e.g. after a redrive) as a duplicate.
        let letter_id = match &origin {
            Some((stream, sequence)) => format!("dlq-{stream}-{sequence}"),
            None => format!("dlq-{}", uuid::Uuid::now_v7()),
        };
        if let Some(original) = headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned()) {
            headers.insert(ORIGINAL_MSG_ID_HEADER, original.as_str());
        }
        headers.insert(async_nats::header::NATS_MESSAGE_ID, letter_id.as_str());
        headers.insert(REASON_HEADER, reason.as_str());
        headers.insert(DETAIL_HEADER, one_line(detail).as_str());
        headers.insert(ORIGINAL_SUBJECT_HEADER, message.subject.as_str());
        if let Some((_, sequence)) = origin {
            headers.insert(ORIGINAL_SEQUENCE_HEADER, sequence.to_string().as_str());
        }
        let subject = format!("{}.{}", self.subject_prefix, reason.as_str());
        let publish = PublishMessage::build().payload(message.payload.clone()).headers(headers);
        self.js.send_publish(subject, publish).await?.await?;
        Ok(())
    }
}

/// Header values are one line.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(500).collect()
}

/// One dead letter as `aggregator dead-letters list` prints it (a JSON line).
#[derive(Debug, Serialize)]
pub struct Listed {
    pub sequence: u64,
    pub reason: String,
    pub detail: String,
    pub original_subject: String,
    pub headers: BTreeMap<String, String>,
    pub payload: String,
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).map(|v| v.as_str().to_owned()).unwrap_or_default()
}

/// Every dead letter (of `reason`, if given), oldest first, with its sequence.
async fn letters(
    stream: &mut stream::Stream,
    reason: Option<&str>,
) -> Result<Vec<(u64, StreamMessage)>, async_nats::Error> {
    let state = stream.info().await?.state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        // Re-driven letters are deleted: gaps are expected.
        let Ok(message) = stream.get_raw_message(sequence).await else { continue };
        if reason.is_none_or(|r| r == header(&message.headers, REASON_HEADER)) {
            out.push((sequence, message));
        }
    }
    Ok(out)
}

/// Every dead letter (of `reason`, if given), oldest first, as `dead-letters list` prints them.
pub async fn list(
    js: &jetstream::Context,
    args: &DeadLetterArgs,
    reason: Option<&str>,
) -> Result<Vec<Listed>, async_nats::Error> {
    let mut stream = js.get_stream(&args.dead_letter_stream).await?;
    let listed = letters(&mut stream, reason)
        .await?
        .into_iter()
        .map(|(sequence, message)| Listed {
            sequence,
            reason: header(&message.headers, REASON_HEADER),
            detail: header(&message.headers, DETAIL_HEADER),
            original_subject: header(&message.headers, ORIGINAL_SUBJECT_HEADER),
            headers: message
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")))
                .collect(),
            payload: String::from_utf8_lossy(&message.payload).into_owned(),
        })
        .collect();
    Ok(listed)
}

/// Publishes each dead letter (of `reason`, if given) back to its original subject and deletes
/// it from the dead-letter stream. Returns how many were re-driven.
///
/// The copy carries `Nats-Msg-Id: redrive-<stream>-<sequence>`, so re-driving the same letter
/// twice (a crash between publish and delete) stores it once; the event inside is counted once
/// anyway, by its event_id.
pub async fn redrive(
    js: &jetstream::Context,
    args: &DeadLetterArgs,
    reason: Option<&str>,
) -> Result<usize, async_nats::Error> {
    let mut stream = js.get_stream(&args.dead_letter_stream).await?;
    let ours =
        [REASON_HEADER, DETAIL_HEADER, ORIGINAL_SUBJECT_HEADER, ORIGINAL_SEQUENCE_HEADER, ORIGINAL_MSG_ID_HEADER];
    let mut count = 0;
    for (sequence, message) in letters(&mut stream, reason).await? {
        let original_subject = header(&message.headers, ORIGINAL_SUBJECT_HEADER);
        let mut headers = HeaderMap::new();
        for (name, values) in message.headers.iter() {
            if !ours.contains(&name.as_ref()) {
                for value in values {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        let publish = PublishMessage::build()
            .payload(message.payload)
            .headers(headers)
            .message_id(format!("redrive-{}-{sequence}", args.dead_letter_stream));
        js.send_publish(original_subject, publish).await?.await?;
        stream.delete_message(sequence).await?;
        count += 1;
    }
    Ok(count)
}
