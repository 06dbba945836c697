//! [`JetStreamQueue`]: a [`WorkQueue`] on a JetStream stream with work-queue retention
//! (e.g. `SIGNET_BACKCHANNEL`, subject `signet.backchannel.logout`) and one durable pull
//! consumer every issuer of the cluster drains, so a job outlives the node that pushed it.
//!
//! A pull fetches one message; its attempt number is the consumer's delivery count.
//! `ack` is a double ack (the server confirms it removed the job); `retry` is a NAK with a
//! delay (redelivered to any issuer after it); `give_up` terminates the message. A message
//! taken by an issuer that dies is redelivered once the consumer's ack wait (the lease)
//! passes. The stream and consumer are created when missing.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use async_trait::async_trait;
use futures::StreamExt;

use super::{check_payload, Job, QueueError, Result, Settle, WorkQueue};

/// Where a queue lives in JetStream.
#[derive(Debug, Clone)]
pub struct JetStreamQueueConfig {
    /// The stream, created when missing (e.g. `SIGNET_BACKCHANNEL`).
    pub stream: String,
    /// Its one subject (e.g. `signet.backchannel.logout`).
    pub subject: String,
    /// The durable consumer every node pulls from.
    pub consumer: String,
    /// Replicas of the stream when this node creates it.
    pub replicas: usize,
    /// A job taken and not settled within it is redelivered (the consumer's ack wait).
    pub lease: Duration,
    /// Jobs older than this are dropped unseen (stale work is useless).
    pub max_age: Duration,
    /// Deliveries after which JetStream stops redelivering, whatever the taker does (a
    /// backstop: takers give up on their own bound first).
    pub max_deliver: i64,
}

/// The cluster [`WorkQueue`]; see the [module documentation](self).
#[derive(Clone)]
pub struct JetStreamQueue {
    js: jetstream::Context,
    consumer: consumer::PullConsumer,
    subject: String,
    stream: String,
}

impl fmt::Debug for JetStreamQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamQueue")
            .field("stream", &self.stream)
            .finish()
    }
}

fn backend(what: &str, e: impl fmt::Display) -> QueueError {
    QueueError::Backend(format!("{what}: {e}"))
}

impl JetStreamQueue {
    /// Opens the stream and its consumer on `client`'s server, creating them when missing.
    pub async fn open(client: async_nats::Client, config: JetStreamQueueConfig) -> Result<Self> {
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                description: Some("Signet work queue".to_owned()),
                subjects: vec![config.subject.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: config.replicas,
                max_age: config.max_age,
                max_message_size: (super::MAX_PAYLOAD + 1024) as i32,
                ..Default::default()
            })
            .await
            .map_err(|e| backend("queue stream", e))?;
        let consumer = stream
            .get_or_create_consumer(
                &config.consumer,
                consumer::pull::Config {
                    durable_name: Some(config.consumer.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: config.lease,
                    max_deliver: config.max_deliver,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| backend("queue consumer", e))?;
        Ok(JetStreamQueue {
            js,
            consumer,
            subject: config.subject,
            stream: config.stream,
        })
    }
}

#[async_trait]
impl WorkQueue for JetStreamQueue {
    async fn push(&self, payload: &[u8]) -> Result<()> {
        check_payload(payload)?;
        self.js
            .publish(self.subject.clone(), payload.to_vec().into())
            .await
            .map_err(|e| backend("queue publish", e))?
            .await
            .map_err(|e| backend("queue publish ack", e))?;
        Ok(())
    }

    async fn pull(&self, wait: Duration) -> Result<Option<Job>> {
        // JetStream needs some patience to answer a pull; a zero wait still asks once.
        let expires = wait.max(Duration::from_millis(100));
        let mut batch = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(expires)
            .messages()
            .await
            .map_err(|e| backend("queue pull", e))?;
        let message = match batch.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(backend("queue pull", e)),
            Some(Ok(m)) => m,
        };
        let attempt = message
            .info()
            .map(|i| u32::try_from(i.delivered.max(1)).unwrap_or(u32::MAX))
            .unwrap_or(1);
        let payload = message.payload.to_vec();
        Ok(Some(Job::new(
            payload,
            attempt,
            Box::new(JetStreamSettle(message)),
        )))
    }
}

struct JetStreamSettle(jetstream::Message);

#[async_trait]
impl Settle for JetStreamSettle {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.0
            .double_ack()
            .await
            .map_err(|e| backend("queue ack", e))
    }

    async fn retry(self: Box<Self>, delay: Duration) -> Result<()> {
        self.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| backend("queue nak", e))
    }

    async fn give_up(self: Box<Self>) -> Result<()> {
        self.0
            .ack_with(AckKind::Term)
            .await
            .map_err(|e| backend("queue term", e))
    }
}
