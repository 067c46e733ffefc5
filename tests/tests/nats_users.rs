//! NATS lets in no one without credentials, and each service's user (deploy/nats/adtrack-users.conf)
//! is refused what is not its work: forging events, reading the stream, reading another user's
//! replies, deleting streams. (Every other test runs the services as these users: that they can
//! do their work is proven there.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use e2e::{nats_login_env, Stack, AD_TRAIL_RUNNER};
use futures::StreamExt;
use serde_json::json;

/// A client logged in as `who` of the test users, and the permission errors the server sent it.
async fn connect_as(stack: &Stack, who: &str) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let env = nats_login_env(who);
    let login = service_kit::NatsLogin { nats_user: env[0].1.clone(), nats_password: env[1].1.clone() };
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let client =
        async_nats::ConnectOptions::with_user_and_password(login.nats_user.clone(), login.nats_password.clone())
            .custom_inbox_prefix(login.inbox_prefix())
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        seen.lock().expect("errors").push(error.to_string());
                    }
                }
            })
            .connect(&stack.nats.url)
            .await
            .unwrap_or_else(|e| panic!("connect as {who}: {e}"));
    (client, errors)
}

/// Waits (a little) until the server has refused something to this client.
async fn refused(errors: &Arc<Mutex<Vec<String>>>, what: &str) {
    for _ in 0..50 {
        if errors.lock().expect("errors").iter().any(|e| e.to_lowercase().contains("permissions violation")) {
            errors.lock().expect("errors").clear();
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: the server did not refuse it");
}

async fn stream_messages(stack: &Stack) -> u64 {
    let js = jetstream::new(stack.nats_admin().await);
    js.get_stream("AD_EVENTS").await.expect("stream").get_info().await.expect("stream info").state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_user_is_refused_what_is_not_its_work() {
    let mut stack = Stack::start().await;
    stack.permission_violations_expected = true;

    // Nobody gets in without credentials, or with the wrong ones.
    assert!(async_nats::connect(&stack.nats.url).await.is_err(), "connected without credentials");
    let wrong = async_nats::ConnectOptions::with_user_and_password("adtrack_ingest".into(), "not-the-password".into())
        .connect(&stack.nats.url)
        .await;
    assert!(wrong.is_err(), "connected with a wrong password");

    // query and the aggregator cannot forge events; nothing they send reaches the stream.
    let before = stream_messages(&stack).await;
    let forged = br#"{"schema_version":1,"type":"click"}"#.to_vec();
    for who in ["query", "aggregator"] {
        let (client, errors) = connect_as(&stack, who).await;
        client.publish("ads.events.click", forged.clone().into()).await.expect("publish");
        client.flush().await.expect("flush");
        refused(&errors, &format!("{who} publishing an event")).await;
    }
    assert_eq!(stream_messages(&stack).await, before, "a forged event reached the stream");

    // Only the aggregator reads events: query may not subscribe to them, nor ingest pull them.
    let (query, errors) = connect_as(&stack, "query").await;
    let mut events = query.subscribe("ads.events.>").await.expect("subscribe");
    refused(&errors, "query subscribing to events").await;
    assert_eq!(stack.post("/ads/click", json!({"ad_id": AD_TRAIL_RUNNER})).await.0, 202);
    assert!(tokio::time::timeout(Duration::from_secs(1), events.next()).await.is_err(), "query read an event");
    let (ingest, errors) = connect_as(&stack, "ingest").await;
    let mut ingest_js = jetstream::new(ingest.clone());
    ingest_js.set_timeout(Duration::from_secs(2));
    assert!(ingest_js.get_stream("AD_EVENTS_DLQ").await.is_err(), "ingest read the dead-letter stream");
    refused(&errors, "ingest asking about the dead-letter stream").await;

    // Nobody reads another user's replies.
    let _spy = ingest.subscribe("_INBOX.adtrack_aggregator.>").await.expect("subscribe");
    refused(&errors, "ingest subscribing to the aggregator's inbox").await;

    // Only the administrator deletes: not even the aggregator, which keeps the stream.
    let (aggregator, errors) = connect_as(&stack, "aggregator").await;
    let mut aggregator_js = jetstream::new(aggregator);
    aggregator_js.set_timeout(Duration::from_secs(2));
    assert!(aggregator_js.delete_stream("AD_EVENTS").await.is_err(), "the aggregator deleted the stream");
    refused(&errors, "the aggregator deleting the stream").await;
    assert!(stream_messages(&stack).await > before, "the stream is gone");
}
