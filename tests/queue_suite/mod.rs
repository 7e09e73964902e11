//! The behaviour every durable queue shares, written once against the `Queue` trait (the
//! semantics of `MemoryQueue`'s unit tests, plus what durability adds): each backend's test file
//! runs it with `queue_suite!(fresh)`, where `fresh()` gives a new, empty queue (in its own
//! schema or file) whose `max_deliveries` is [`MAX_DELIVERIES`], or `None` to skip.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tasker::queue::{Envelope, LeaseId, Queue, QueueError};
use tasker::telemetry::propagation::TraceContext;

/// The delivery limit `fresh()` configures.
pub const MAX_DELIVERIES: u32 = 3;

pub const LEASE: Duration = Duration::from_secs(30);

pub fn envelope(name: &str) -> Envelope {
    Envelope::new(name, "1", Value::Null)
}

/// Writes the suite's tests for a backend.
macro_rules! queue_suite {
    ($fresh:ident) => {
        queue_suite!(@tests $fresh;
            claims_come_out_in_push_order,
            an_expired_lease_hands_the_envelope_out_again,
            a_renewed_lease_does_not_expire,
            requeued_envelope_waits_out_its_delay,
            a_waiting_claim_wakes_up_on_push,
            a_late_acknowledge_of_an_expired_lease_is_refused,
            unknown_leases_are_lost,
            deliveries_past_the_limit_are_dead_lettered,
            an_expired_last_delivery_is_dead_lettered,
            envelopes_round_trip_through_the_backend,
            concurrent_claims_never_share_an_envelope,
        );
    };
    (@tests $fresh:ident; $($name:ident,)*) => {
        mod behaviour {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(fixture) = super::$fresh().await else { return };
                    crate::queue_suite::$name(fixture.queue.clone()).await;
                }
            )*
        }
    };
}

pub async fn claims_come_out_in_push_order(queue: Arc<dyn Queue>) {
    for name in ["a", "b", "c"] {
        queue.push(envelope(name)).await.unwrap();
    }
    let mut names = Vec::new();
    while let Some(claim) = queue.claim(LEASE, Duration::ZERO).await.unwrap() {
        names.push(claim.envelope.task_name.clone());
        queue.acknowledge(claim.lease).await.unwrap();
    }
    assert_eq!(names, ["a", "b", "c"]);
}

pub async fn an_expired_lease_hands_the_envelope_out_again(queue: Arc<dyn Queue>) {
    queue.push(envelope("a")).await.unwrap();
    let first = queue
        .claim(Duration::from_millis(400), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.envelope.delivery_attempt, 1);
    assert!(queue.claim(LEASE, Duration::ZERO).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(second.envelope.task_id, first.envelope.task_id);
    assert_eq!(second.envelope.delivery_attempt, 2);
    assert_eq!(
        queue.acknowledge(first.lease).await,
        Err(QueueError::LeaseLost(first.lease))
    );
    assert_eq!(queue.acknowledge(second.lease).await, Ok(()));
    assert!(queue.claim(LEASE, Duration::ZERO).await.unwrap().is_none());
}

pub async fn a_renewed_lease_does_not_expire(queue: Arc<dyn Queue>) {
    queue.push(envelope("a")).await.unwrap();
    let claim = queue
        .claim(Duration::from_millis(400), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    queue.renew(claim.lease, LEASE).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(queue.claim(LEASE, Duration::ZERO).await.unwrap().is_none());
    queue.acknowledge(claim.lease).await.unwrap();
}

pub async fn requeued_envelope_waits_out_its_delay(queue: Arc<dyn Queue>) {
    queue.push(envelope("a")).await.unwrap();
    let claim = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    let requeued = Instant::now();
    queue
        .requeue(claim.lease, Duration::from_millis(600))
        .await
        .unwrap();
    assert!(queue.claim(LEASE, Duration::ZERO).await.unwrap().is_none());
    let again = queue
        .claim(LEASE, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(requeued.elapsed() >= Duration::from_millis(550));
    assert!(
        requeued.elapsed() < Duration::from_secs(3),
        "a delayed envelope is claimed soon after it is due, not at the next poll"
    );
    assert_eq!(again.envelope.task_id, claim.envelope.task_id);
    assert_eq!(again.envelope.delivery_attempt, 2);
    queue.acknowledge(again.lease).await.unwrap();
}

pub async fn a_waiting_claim_wakes_up_on_push(queue: Arc<dyn Queue>) {
    let waiter = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.claim(LEASE, Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    queue.push(envelope("late")).await.unwrap();
    let claim = waiter.await.unwrap().unwrap().unwrap();
    assert_eq!(claim.envelope.task_name, "late");
}

/// Durable queues refuse whatever a worker does with a lease after it ended, even when no other
/// worker took the envelope yet: another may at any moment.
pub async fn a_late_acknowledge_of_an_expired_lease_is_refused(queue: Arc<dyn Queue>) {
    queue.push(envelope("a")).await.unwrap();
    let claim = queue
        .claim(Duration::from_millis(50), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lost = Err(QueueError::LeaseLost(claim.lease));
    assert_eq!(queue.renew(claim.lease, LEASE).await, lost);
    assert_eq!(queue.acknowledge(claim.lease).await, lost);
    assert_eq!(queue.requeue(claim.lease, Duration::ZERO).await, lost);
    // The envelope was not lost with the lease.
    let again = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(again.envelope.task_id, claim.envelope.task_id);
    assert_eq!(again.envelope.delivery_attempt, 2);
    queue.acknowledge(again.lease).await.unwrap();
}

pub async fn unknown_leases_are_lost(queue: Arc<dyn Queue>) {
    let lease = LeaseId(42);
    let lost = Err(QueueError::LeaseLost(lease));
    assert_eq!(queue.renew(lease, LEASE).await, lost);
    assert_eq!(queue.acknowledge(lease).await, lost);
    assert_eq!(queue.requeue(lease, Duration::ZERO).await, lost);
    queue.push(envelope("a")).await.unwrap();
    let claim = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    queue.acknowledge(claim.lease).await.unwrap();
    assert_eq!(
        queue.acknowledge(claim.lease).await,
        Err(QueueError::LeaseLost(claim.lease)),
        "a second acknowledge finds nothing"
    );
}

pub async fn deliveries_past_the_limit_are_dead_lettered(queue: Arc<dyn Queue>) {
    queue.push(envelope("doomed")).await.unwrap();
    for delivery in 1..=MAX_DELIVERIES {
        let claim = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(claim.envelope.delivery_attempt, delivery);
        queue.requeue(claim.lease, Duration::ZERO).await.unwrap();
    }
    assert!(
        queue
            .claim(LEASE, Duration::from_millis(100))
            .await
            .unwrap()
            .is_none(),
        "an envelope delivered {MAX_DELIVERIES} times is not delivered again"
    );
}

pub async fn an_expired_last_delivery_is_dead_lettered(queue: Arc<dyn Queue>) {
    queue.push(envelope("doomed")).await.unwrap();
    for delivery in 1..=MAX_DELIVERIES {
        let claim = queue
            .claim(Duration::from_millis(30), Duration::from_secs(2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claim.envelope.delivery_attempt, delivery);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(queue.claim(LEASE, Duration::ZERO).await.unwrap().is_none());
}

pub async fn envelopes_round_trip_through_the_backend(queue: Arc<dyn Queue>) {
    let mut sent = Envelope::new(
        "ship_order",
        "2.1.0",
        json!({"id": 7, "items": ["a", "ü", "\"quoted\""], "nested": {"n": null}}),
    );
    sent.bypass_steps = vec!["gift_wrap".to_owned()];
    sent.trace_context = Some(TraceContext {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        tracestate: Some("vendor=value".to_owned()),
        baggage: Some("user=42".to_owned()),
    });
    queue.push(sent.clone()).await.unwrap();
    let claim = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(claim.envelope, sent);
    queue.acknowledge(claim.lease).await.unwrap();
}

pub async fn concurrent_claims_never_share_an_envelope(queue: Arc<dyn Queue>) {
    let mut sent = HashSet::new();
    for index in 0..60 {
        let envelope = envelope(&format!("task-{index}"));
        sent.insert(envelope.task_id);
        queue.push(envelope).await.unwrap();
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut taken = Vec::new();
                while let Some(claim) = queue.claim(LEASE, Duration::ZERO).await.unwrap() {
                    taken.push(claim.envelope.task_id);
                    queue.acknowledge(claim.lease).await.unwrap();
                }
                taken
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for worker in workers {
        for id in worker.await.unwrap() {
            assert!(seen.insert(id), "task {id} was handed out twice");
        }
    }
    assert_eq!(seen, sent);
}
