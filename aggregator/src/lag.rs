//! Consumer lag, sampled every few seconds for `/metrics`: how many messages wait to be
//! delivered, how many were delivered and wait for their ack, and how long ago the oldest
//! message not yet acked was stored in the stream (the age of the oldest unprocessed event);
//! and how full the stream is.
//! Reading that message's time fetches the whole message from the stream: one message every
//! few seconds, while anything waits.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::stream::Stream;
use time::OffsetDateTime;

use crate::metrics::Metrics;

/// How often the consumer is asked.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples forever; a failed sample leaves the gauges as they were, and is logged.
pub async fn watch(mut consumer: PullConsumer, stream: Stream, subjects: String, metrics: Metrics) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    // After a stall, one sample, not a burst of the missed ones.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = sample(&mut consumer, &stream, &subjects, &metrics).await {
            tracing::warn!(%error, "consumer lag not sampled");
        }
    }
}

async fn sample(
    consumer: &mut PullConsumer,
    stream: &Stream,
    subjects: &str,
    metrics: &Metrics,
) -> Result<(), async_nats::Error> {
    let stream_info = stream.get_info().await?;
    metrics.stream_bytes.set(i64::try_from(stream_info.state.bytes).unwrap_or(i64::MAX));
    metrics.stream_max_bytes.set(stream_info.config.max_bytes);
    let info = consumer.info().await?;
    let (pending, ack_pending, ack_floor) = (info.num_pending, info.num_ack_pending, info.ack_floor.stream_sequence);
    metrics.consumer_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    metrics.consumer_ack_pending.set(i64::try_from(ack_pending).unwrap_or(i64::MAX));
    let age = if pending == 0 && ack_pending == 0 {
        0.0
    } else {
        // Everything up to the ack floor is processed; the first message after it is the oldest
        // that is not (the next one on the stream's subjects, in case some were removed).
        let oldest = stream.raw_message_builder().sequence(ack_floor + 1).next_by_subject(subjects).send().await?;
        age_secs(oldest.time, OffsetDateTime::now_utc())
    };
    metrics.oldest_unprocessed_age_seconds.set(age);
    Ok(())
}

/// Seconds from `stored` to `now`; never negative (clocks of two machines may disagree).
fn age_secs(stored: OffsetDateTime, now: OffsetDateTime) -> f64 {
    (now - stored).as_seconds_f64().max(0.0)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn ages_are_never_negative() {
        assert_eq!(age_secs(datetime!(2026-12-01 10:00 UTC), datetime!(2026-12-01 10:01:30 UTC)), 90.0);
        assert_eq!(age_secs(datetime!(2026-12-01 10:00:01 UTC), datetime!(2026-12-01 10:00 UTC)), 0.0);
    }
}
