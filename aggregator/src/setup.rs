//! Creates (or updates) the JetStream stream and the aggregator's durable pull consumer.

use async_nats::jetstream::{self, consumer, stream};

use crate::config::Config;

pub async fn ensure_stream(js: &jetstream::Context, config: &Config) -> Result<stream::Info, async_nats::Error> {
    let info = js
        .create_or_update_stream(stream::Config {
            name: config.nats.nats_stream.clone(),
            subjects: vec![schemas::stream::stream_subjects(&config.nats.nats_subject_prefix)],
            storage: stream::StorageType::File,
            max_age: config.stream.max_age(),
            max_bytes: i64::try_from(config.stream.stream_max_bytes).unwrap_or(i64::MAX),
            // Full: refuse what is new rather than drop what the aggregator may not have read.
            discard: stream::DiscardPolicy::New,
            duplicate_window: config.stream.duplicate_window(),
            num_replicas: config.stream.stream_replicas,
            description: Some("Accepted ad events (JSON, Nats-Msg-Id = event_id); the source of truth".into()),
            ..Default::default()
        })
        .await?;
    tracing::info!(stream = %info.config.name, messages = info.state.messages, "stream ready");
    Ok(info)
}

pub async fn ensure_consumer(
    js: &jetstream::Context,
    config: &Config,
) -> Result<consumer::PullConsumer, async_nats::Error> {
    let stream = js.get_stream(&config.nats.nats_stream).await?;
    let name = &config.consumer.nats_consumer;
    let wanted = consumer::pull::Config {
        durable_name: Some(name.clone()),
        description: Some("Writes events into ClickHouse; acks after the insert".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: config.consumer.ack_wait(),
        deliver_policy: consumer::DeliverPolicy::All,
        // The default (1000) would silently cap every batch at 1000 messages.
        max_ack_pending: (config.consumer.batch_max_messages as i64 * 4).max(1000),
        ..Default::default()
    };
    // Creating a durable that exists updates its editable settings (ack wait, max ack pending),
    // so configuration changes take effect. If the server refuses, keep the existing one.
    match stream.create_consumer(wanted).await {
        Ok(consumer) => Ok(consumer),
        Err(error) => {
            tracing::warn!(consumer = %name, %error, "consumer settings not updated; using the existing consumer");
            Ok(stream.get_consumer(name).await?)
        }
    }
}
