//! The behaviour every durable queue shares, written once against the `Queue` trait (the
//! semantics of `MemoryQueue`'s unit tests, plus what durability adds): each backend's test file
//! runs it with `queue_suite!(fresh)`, where `fresh()` gives a new, empty queue (in its own
//! schema or file) whose `max_deliveries` is [`MAX_DELIVERIES`], or `None` to skip.

#![allow(dead_code)]

pub mod terminal;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use crate::support::task_log::{Observe, TaskLog};
use tasker::queue::{
    BoxFuture, Claim, Completion, Counts, DeadLetter, Envelope, Isolation, LeaseId, Queue,
    QueueError, RetriedDeadLetters, RunTrace, TaskCounts, DEAD_LETTER_DECODED_BYTES,
    DEAD_LETTER_RAW_BYTES, MAX_ENVELOPE_BYTES,
};
use tasker::queue::{CheckpointError, Checkpoints};
use tasker::telemetry::propagation::TraceContext;
use tasker::{Runtime, TaskRequest};

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
            released_envelopes_come_back_at_once_without_counting_a_delivery,
            unfinished_counts_ready_delayed_and_leased_envelopes,
            an_expired_last_delivery_is_dead_lettered,
            an_expired_lease_that_ran_beside_others_does_not_count,
            an_expired_lease_that_ran_alone_counts,
            an_expired_lease_is_handed_only_to_a_claimer_that_runs_alone,
            requeues_of_shared_runs_count,
            task_retries_count_deliveries_as_requeues_do,
            a_task_retry_keeps_a_context_holding_nul,
            envelopes_round_trip_through_the_backend,
            concurrent_claims_never_share_an_envelope,
            the_next_delivery_carries_the_run_an_earlier_one_recorded,
            checkpoints_are_recorded_only_while_the_lease_is_held,
            a_task_whose_lease_is_taken_stops_without_a_terminal_event,
            a_batch_claims_up_to_max_in_push_order_each_under_its_own_lease,
            a_batch_of_a_claimer_that_runs_alone_takes_suspects_first,
            a_waiting_batch_claim_wakes_up_on_push,
        );
        queue_suite!(@table_tests $fresh;
            unreadable_rows_are_buried_and_every_good_envelope_is_claimed,
            dead_letters_list_a_dead_envelope_and_buried_rows_with_their_fields,
            operators_count_retry_and_purge_every_kind_of_dead_row,
            unreadable_rows_in_a_batch_are_buried_and_its_good_envelopes_claimed,
            dead_letters_come_a_page_at_a_time_and_large_envelopes_by_their_start,
        );
    };
    (@table_tests $fresh:ident; $($name:ident,)*) => {
        mod table {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(fixture) = super::$fresh().await else { return };
                    crate::queue_suite::$name(&fixture).await;
                }
            )*
        }
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

/// A batch leases up to `max` ready envelopes, oldest first, each under a lease of its own
/// that is acknowledged (and refused once ended) on its own; the next batch takes the rest.
pub async fn a_batch_claims_up_to_max_in_push_order_each_under_its_own_lease(
    queue: Arc<dyn Queue>,
) {
    for name in ["a", "b", "c", "d", "e"] {
        queue.push(envelope(name)).await.unwrap();
    }
    let names = |claims: &[Claim]| -> Vec<String> {
        claims
            .iter()
            .map(|claim| claim.envelope.task_name.clone())
            .collect()
    };
    let first = queue
        .claim_batch(3, LEASE, Duration::ZERO, Isolation::Shared)
        .await
        .unwrap();
    assert_eq!(names(&first), ["a", "b", "c"]);
    assert!(first
        .iter()
        .all(|claim| claim.envelope.delivery_attempt == 1));
    let leases: HashSet<LeaseId> = first.iter().map(|claim| claim.lease).collect();
    assert_eq!(leases.len(), 3, "one lease per envelope");
    let rest = queue
        .claim_batch(3, LEASE, Duration::ZERO, Isolation::Shared)
        .await
        .unwrap();
    assert_eq!(names(&rest), ["d", "e"]);
    assert!(queue
        .claim_batch(3, LEASE, Duration::ZERO, Isolation::Shared)
        .await
        .unwrap()
        .is_empty());
    assert!(queue
        .claim_batch(0, LEASE, Duration::ZERO, Isolation::Shared)
        .await
        .unwrap()
        .is_empty());
    for claim in first.iter().chain(&rest) {
        queue.acknowledge(claim.lease).await.unwrap();
    }
    assert_eq!(
        queue.acknowledge(first[1].lease).await,
        Err(QueueError::LeaseLost(first[1].lease))
    );
}

/// A batch of a claimer that runs alone starts with the suspects (expired leases, as their
/// next delivery), then ready envelopes; a shared claimer's batch never holds a suspect.
pub async fn a_batch_of_a_claimer_that_runs_alone_takes_suspects_first(queue: Arc<dyn Queue>) {
    let suspect = envelope("suspect");
    queue.push(suspect.clone()).await.unwrap();
    let crashed = claim_as(&queue, Isolation::Shared, SHORT_LEASE)
        .await
        .unwrap();
    assert_eq!(crashed.envelope.task_id, suspect.task_id);
    for name in ["r1", "r2", "r3"] {
        queue.push(envelope(name)).await.unwrap();
    }
    expire().await;
    let shared = queue
        .claim_batch(2, LEASE, Duration::ZERO, Isolation::Shared)
        .await
        .unwrap();
    let names: Vec<_> = shared
        .iter()
        .map(|c| c.envelope.task_name.as_str())
        .collect();
    assert_eq!(names, ["r1", "r2"], "no suspect for a shared claimer");
    let alone = queue
        .claim_batch(5, LEASE, Duration::ZERO, Isolation::Alone)
        .await
        .unwrap();
    let taken: Vec<_> = alone
        .iter()
        .map(|c| (c.envelope.task_name.as_str(), c.envelope.delivery_attempt))
        .collect();
    assert_eq!(taken, [("suspect", 2), ("r3", 1)]);
    for claim in shared.iter().chain(&alone) {
        queue.acknowledge(claim.lease).await.unwrap();
    }
    assert!(!queue.suspects_waiting().await.unwrap());
}

/// A batch claim that waits is woken by a push, and takes what is there.
pub async fn a_waiting_batch_claim_wakes_up_on_push(queue: Arc<dyn Queue>) {
    let waiter = {
        let queue = queue.clone();
        tokio::spawn(async move {
            queue
                .claim_batch(4, LEASE, Duration::from_secs(5), Isolation::Shared)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    queue.push(envelope("late")).await.unwrap();
    let claims = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the batch claim ends within its wait")
        .unwrap()
        .unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].envelope.task_name, "late");
    queue.acknowledge(claims[0].lease).await.unwrap();
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

pub async fn released_envelopes_come_back_at_once_without_counting_a_delivery(
    queue: Arc<dyn Queue>,
) {
    queue.push(envelope("handed-back")).await.unwrap();
    // More hand-backs than the delivery limit: none counts.
    for delivery in 1..=MAX_DELIVERIES + 2 {
        let claim = queue
            .claim(LEASE, Duration::ZERO)
            .await
            .unwrap()
            .expect("a released envelope is claimable at once");
        assert_eq!(claim.envelope.delivery_attempt, delivery);
        queue.release(claim.lease).await.unwrap();
        assert_eq!(
            queue.release(claim.lease).await,
            Err(QueueError::LeaseLost(claim.lease)),
            "a released lease is not held"
        );
    }
    // Deliveries that count still meet the limit: the current one and two more.
    for _ in 0..MAX_DELIVERIES {
        let claim = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
        queue.requeue(claim.lease, Duration::ZERO).await.unwrap();
    }
    assert!(queue.claim(LEASE, Duration::ZERO).await.unwrap().is_none());
}

pub async fn unfinished_counts_ready_delayed_and_leased_envelopes(queue: Arc<dyn Queue>) {
    assert_eq!(queue.unfinished().await, Ok(Some(0)));
    for name in ["leased", "delayed", "ready"] {
        queue.push(envelope(name)).await.unwrap();
    }
    let leased = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    let delayed = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    queue
        .requeue(delayed.lease, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(queue.unfinished().await, Ok(Some(3)));
    queue.acknowledge(leased.lease).await.unwrap();
    assert_eq!(queue.unfinished().await, Ok(Some(2)));
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

/// A lease short enough to expire within a test.
const SHORT_LEASE: Duration = Duration::from_millis(100);

/// Claims with `isolation`, waiting up to two seconds: the claim, or `None`.
async fn claim_as(queue: &Arc<dyn Queue>, isolation: Isolation, lease: Duration) -> Option<Claim> {
    queue
        .claim_isolated(lease, Duration::from_secs(2), isolation)
        .await
        .unwrap()
}

/// Waits until a lease of `SHORT_LEASE` taken just before has expired.
async fn expire() {
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(50)).await;
}

/// A crash while the run shared its process is not counted: after it, the envelope still gets
/// `MAX_DELIVERIES` lone deliveries before it is dead-lettered, while `delivery_attempt` counts
/// every delivery.
pub async fn an_expired_lease_that_ran_beside_others_does_not_count(queue: Arc<dyn Queue>) {
    queue.push(envelope("innocent")).await.unwrap();
    let shared = claim_as(&queue, Isolation::Shared, SHORT_LEASE)
        .await
        .unwrap();
    assert_eq!(shared.envelope.delivery_attempt, 1);
    expire().await;
    let mut deliveries = vec![1];
    while let Some(claim) = queue
        .claim_isolated(SHORT_LEASE, Duration::ZERO, Isolation::Alone)
        .await
        .unwrap()
    {
        assert_eq!(claim.envelope.task_id, shared.envelope.task_id);
        deliveries.push(claim.envelope.delivery_attempt);
        assert!(
            deliveries.len() <= 10,
            "never dead-lettered: {deliveries:?}"
        );
        expire().await;
    }
    assert_eq!(
        deliveries,
        (1..=MAX_DELIVERIES + 1).collect::<Vec<_>>(),
        "the shared delivery did not count; the {MAX_DELIVERIES} lone ones did"
    );
    assert!(!queue.suspects_waiting().await.unwrap(), "dead-lettered");
}

/// A crash while the run was alone in its process counts, as every expiry did before.
pub async fn an_expired_lease_that_ran_alone_counts(queue: Arc<dyn Queue>) {
    queue.push(envelope("poison")).await.unwrap();
    let mut deliveries = Vec::new();
    while let Some(claim) = queue
        .claim_isolated(SHORT_LEASE, Duration::ZERO, Isolation::Alone)
        .await
        .unwrap()
    {
        deliveries.push(claim.envelope.delivery_attempt);
        assert!(
            deliveries.len() <= 10,
            "never dead-lettered: {deliveries:?}"
        );
        expire().await;
    }
    assert_eq!(deliveries, (1..=MAX_DELIVERIES).collect::<Vec<_>>());
    assert!(!queue.suspects_waiting().await.unwrap());
}

/// An envelope whose lease expired is a suspect: a shared claimer is not handed it (but gets
/// the envelopes that are ready), the queue says a suspect waits, and a lone claimer takes it.
pub async fn an_expired_lease_is_handed_only_to_a_claimer_that_runs_alone(queue: Arc<dyn Queue>) {
    assert!(!queue.suspects_waiting().await.unwrap(), "an empty queue");
    let suspect = envelope("suspect");
    queue.push(suspect.clone()).await.unwrap();
    queue.push(envelope("ready")).await.unwrap();
    let first = claim_as(&queue, Isolation::Shared, SHORT_LEASE)
        .await
        .unwrap();
    assert_eq!(first.envelope.task_id, suspect.task_id);
    assert!(
        !queue.suspects_waiting().await.unwrap(),
        "a lease still held is no suspect"
    );
    expire().await;
    assert!(queue.suspects_waiting().await.unwrap());
    let ready = claim_as(&queue, Isolation::Shared, LEASE).await.unwrap();
    assert_eq!(ready.envelope.task_name, "ready");
    let started = Instant::now();
    assert!(
        queue
            .claim_isolated(LEASE, Duration::from_millis(300), Isolation::Shared)
            .await
            .unwrap()
            .is_none(),
        "a shared claimer is not handed the suspect"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the shared claim waited out its wait"
    );
    let alone = claim_as(&queue, Isolation::Alone, LEASE).await.unwrap();
    assert_eq!(alone.envelope.task_id, suspect.task_id);
    assert_eq!(alone.envelope.delivery_attempt, 2);
    assert!(!queue.suspects_waiting().await.unwrap(), "taken");
    queue.acknowledge(alone.lease).await.unwrap();
    queue.acknowledge(ready.lease).await.unwrap();
    assert!(queue.claim(LEASE, Duration::ZERO).await.unwrap().is_none());
}

/// An explicit requeue counts, shared or not: the task's own run handed it back.
pub async fn requeues_of_shared_runs_count(queue: Arc<dyn Queue>) {
    queue.push(envelope("handed back")).await.unwrap();
    for delivery in 1..=MAX_DELIVERIES {
        let claim = claim_as(&queue, Isolation::Shared, LEASE).await.unwrap();
        assert_eq!(claim.envelope.delivery_attempt, delivery);
        queue.requeue(claim.lease, Duration::ZERO).await.unwrap();
    }
    assert!(
        queue
            .claim_isolated(LEASE, Duration::from_millis(100), Isolation::Alone)
            .await
            .unwrap()
            .is_none(),
        "an envelope requeued {MAX_DELIVERIES} times is not delivered again"
    );
}

/// A task retry (`requeue_attempt`) counts deliveries as a requeue does: two crashes beside
/// other tasks (not the task's own) and two failed attempts (its own) leave it two counted
/// deliveries of three, so it is delivered again; a third failed attempt dead-letters it.
pub async fn task_retries_count_deliveries_as_requeues_do(queue: Arc<dyn Queue>) {
    queue.push(envelope("retried innocent")).await.unwrap();
    let mut deliveries = Vec::new();
    for task_attempt in 2..=3u32 {
        let shared = claim_as(&queue, Isolation::Shared, SHORT_LEASE)
            .await
            .unwrap();
        deliveries.push(shared.envelope.delivery_attempt);
        expire().await;
        let alone = claim_as(&queue, Isolation::Alone, LEASE).await.unwrap();
        deliveries.push(alone.envelope.delivery_attempt);
        queue
            .requeue_attempt(alone.lease, Duration::ZERO, task_attempt)
            .await
            .unwrap();
    }
    assert_eq!(deliveries, [1, 2, 3, 4]);
    let third = claim_as(&queue, Isolation::Alone, LEASE)
        .await
        .expect("delivered again after 2 failed attempts and 2 crashes that were not its own");
    assert_eq!(
        (third.envelope.delivery_attempt, third.envelope.task_attempt),
        (5, 3)
    );
    queue
        .requeue_attempt(third.lease, Duration::ZERO, 4)
        .await
        .unwrap();
    assert!(
        queue
            .claim_isolated(LEASE, Duration::from_millis(100), Isolation::Alone)
            .await
            .unwrap()
            .is_none(),
        "a third failed attempt is the third counted delivery: dead-lettered"
    );
}

/// A task retry hands back an envelope whose context holds a NUL character unchanged (JSON
/// allows it; PostgreSQL's `jsonb` does not).
pub async fn a_task_retry_keeps_a_context_holding_nul(queue: Arc<dyn Queue>) {
    let sent = Envelope::new("t", "1", json!({"note": "a\u{0}b"}));
    queue.push(sent.clone()).await.unwrap();
    let claim = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    queue
        .requeue_attempt(claim.lease, Duration::ZERO, 2)
        .await
        .unwrap();
    let again = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    let mut expected = sent;
    expected.delivery_attempt = 2;
    expected.task_attempt = 2;
    assert_eq!(again.envelope, expected);
    queue.acknowledge(again.lease).await.unwrap();
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

/// A trace context, as a worker's run would record it.
fn run_trace(delivery_attempt: u32) -> RunTrace {
    RunTrace {
        delivery_attempt,
        trace_context: TraceContext::new(format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b{delivery_attempt}-01"
        )),
    }
}

pub async fn the_next_delivery_carries_the_run_an_earlier_one_recorded(queue: Arc<dyn Queue>) {
    let sent = envelope("a");
    queue.push(sent.clone()).await.unwrap();
    let first = queue
        .claim(Duration::from_millis(400), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.previous_run, None, "a first delivery follows no run");
    queue.record_run(first.lease, &run_trace(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(second.envelope.delivery_attempt, 2);
    assert_eq!(second.previous_run, Some(run_trace(1)));
    assert_eq!(
        queue.record_run(first.lease, &run_trace(1)).await,
        Err(QueueError::LeaseLost(first.lease)),
        "a lease that ended records no run"
    );
    // The second delivery's own record replaces the first's.
    queue.record_run(second.lease, &run_trace(2)).await.unwrap();
    queue.requeue(second.lease, Duration::ZERO).await.unwrap();
    let third = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(third.previous_run, Some(run_trace(2)));
    let done = Completion {
        succeeded: true,
        output: None,
        error: None,
    };
    queue.complete(third.lease, &done).await.unwrap();
    // The record left with the task: the same request sent again and handed back once follows
    // no run.
    queue.push(sent).await.unwrap();
    let again = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    queue.requeue(again.lease, Duration::ZERO).await.unwrap();
    let after = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(after.envelope.delivery_attempt, 2);
    assert_eq!(after.previous_run, None);
    queue.acknowledge(after.lease).await.unwrap();
}

/// Records a checkpoint; `None` when the record did not finish within `wait`.
async fn record(
    checkpoints: &Arc<dyn Checkpoints>,
    position: u32,
    step: &'static str,
    wait: Duration,
) -> Option<Result<(), CheckpointError>> {
    tokio::time::timeout(
        wait,
        checkpoints.record(position, step, json!(position * 10)),
    )
    .await
    .ok()
}

pub async fn checkpoints_are_recorded_only_while_the_lease_is_held(queue: Arc<dyn Queue>) {
    queue.push(envelope("a")).await.unwrap();
    let first = queue
        .claim(Duration::from_millis(400), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let task_id = first.envelope.task_id;
    let held = queue
        .checkpoints(task_id, first.lease)
        .await
        .unwrap()
        .expect("a durable queue keeps checkpoints");
    assert_eq!(
        record(&held, 0, "reserve", Duration::from_secs(10)).await,
        Some(Ok(())),
        "recorded while the lease is held"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(second.envelope.delivery_attempt, 2);
    // The first delivery's lease is gone: its record is refused, so its step never counts as
    // completed.
    assert_eq!(
        record(&held, 1, "charge", Duration::from_secs(2)).await,
        Some(Err(CheckpointError::LeaseLost)),
        "a record after the lease ended must be refused"
    );
    let replay = queue
        .checkpoints(task_id, second.lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replay.recorded(0), Some(json!(0)));
    assert_eq!(replay.recorded(1), None, "the refused record left nothing");
    queue.acknowledge(second.lease).await.unwrap();
}

/// Passes every call through to `queue`, except renewals while they are held back: those
/// succeed without reaching the queue, so the lease ends there while its worker believes it
/// renewed.
pub struct RenewalsHeldBack {
    pub queue: Arc<dyn Queue>,
    pub held_back: AtomicBool,
}

impl Queue for RenewalsHeldBack {
    fn name(&self) -> &str {
        self.queue.name()
    }
    fn push(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.push(envelope)
    }
    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
        self.queue.claim(lease, wait)
    }
    fn renew(&self, lease: LeaseId, duration: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        if self.held_back.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Ok(())));
        }
        self.queue.renew(lease, duration)
    }
    fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.acknowledge(lease)
    }
    fn complete(
        &self,
        lease: LeaseId,
        completion: &Completion,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.complete(lease, completion)
    }
    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.requeue(lease, delay)
    }
    fn checkpoints(
        &self,
        task_id: uuid::Uuid,
        lease: LeaseId,
    ) -> BoxFuture<'_, Result<Option<Arc<dyn Checkpoints>>, QueueError>> {
        self.queue.checkpoints(task_id, lease)
    }
    fn record_run(&self, lease: LeaseId, run: &RunTrace) -> BoxFuture<'_, Result<(), QueueError>> {
        self.queue.record_run(lease, run)
    }
}

#[tasker::step(max_attempts = 1)]
async fn suite_reserve(order: u32) -> u32 {
    order * 10
}

#[tasker::step(max_attempts = 1)]
async fn suite_wait_for_ever(reservation: u32) -> u32 {
    std::future::pending::<()>().await;
    reservation
}

#[tasker::task(name = "suite_lease_taken", version = "1.0.0")]
async fn suite_lease_taken(order: u32) -> u32 {
    let reservation = suite_reserve(order).await;
    suite_wait_for_ever(reservation).await
}

/// A worker whose lease ends while its task waits in its second step (its renewals are held
/// back), and another claimer takes the task over: once its renewals reach the queue again, the
/// first is refused and the worker stops the task — no `task.finalize`, `task.complete` or
/// `task.error` from it, the interrupted step cancelled, the abandonment told to observers once
/// — and the step it completed is replayable by the new delivery.
pub async fn a_task_whose_lease_is_taken_stops_without_a_terminal_event(queue: Arc<dyn Queue>) {
    let log = Arc::new(TaskLog::default());
    let _subscription = tasker::events::subscribe(Observe(log.clone()));
    let held_back = Arc::new(RenewalsHeldBack {
        queue: queue.clone(),
        held_back: AtomicBool::new(true),
    });
    let worker = Runtime::builder()
        .workers(1)
        .lease(Duration::from_millis(300))
        .shared_queue(held_back.clone())
        .build()
        .unwrap();
    let handle = worker
        .enqueue(TaskRequest::new("suite_lease_taken", &7u32).unwrap())
        .await
        .unwrap();
    *log.task_id.lock().unwrap() = Some(handle.task_id());
    log.wait_for("the second step to start", |lines| {
        lines
            .iter()
            .any(|line| line == "step.handle suite_wait_for_ever")
    })
    .await;
    // The lease ends unrenewed; another claimer takes the task over.
    let thief = queue
        .claim(LEASE, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the expired lease hands the task out again");
    assert_eq!(thief.envelope.task_id, handle.task_id());
    assert_eq!(thief.envelope.delivery_attempt, 2);
    held_back.held_back.store(false, Ordering::SeqCst);
    log.wait_for("the first worker to stop the task", |lines| {
        lines.iter().any(|line| line.starts_with("step.error"))
    })
    .await;
    assert_eq!(
        log.lines(),
        [
            "task.start",
            "task.handle",
            "step.handle suite_reserve",
            "step.complete suite_reserve",
            "step.handle suite_wait_for_ever",
            "step.error suite_wait_for_ever tasker::Cancelled",
        ]
    );
    assert_eq!(log.abandoned(), [handle.task_id()]);
    // The new delivery replays the step the first one completed, on a queue that keeps
    // checkpoints (a `MemoryQueue` keeps none: its envelopes die with the process).
    if let Some(checkpoints) = queue
        .checkpoints(thief.envelope.task_id, thief.lease)
        .await
        .unwrap()
    {
        assert_eq!(checkpoints.recorded(0), Some(json!(70)));
        assert_eq!(checkpoints.recorded(1), None);
    }
    let done = Completion {
        succeeded: true,
        output: Some(json!(70)),
        error: None,
    };
    queue.complete(thief.lease, &done).await.unwrap();
    worker.shutdown().await;
    assert_eq!(
        log.lines().len(),
        6,
        "nothing more from the first worker: {:#?}",
        log.lines()
    );
    assert_eq!(log.abandoned().len(), 1);
}

/// Which input of [`suite_record`] ran how many times.
static RUNS: Mutex<Option<HashMap<u64, u32>>> = Mutex::new(None);

#[tasker::task(name = "suite_record", version = "1.0.0")]
async fn suite_record(n: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(1)).await;
    *RUNS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(n)
        .or_default() += 1;
    n
}

/// Two runtimes, each with its own connection (`first`, `second`) to one database, share 300
/// tasks: once `queued` (the backend's counts) is empty, every task ran exactly once.
pub async fn two_runtimes_on_one_database_run_every_task_once<F>(
    first: Arc<dyn Queue>,
    second: Arc<dyn Queue>,
    queued: impl Fn() -> F,
) where
    F: Future<Output = Counts>,
{
    const TASKS: u64 = 300;
    let first = Runtime::builder()
        .workers(4)
        .shared_queue(first)
        .build()
        .unwrap();
    let other = Runtime::builder()
        .workers(4)
        .shared_queue(second)
        .build()
        .unwrap();
    for n in 0..TASKS {
        first
            .enqueue(TaskRequest::new("suite_record", &n).unwrap())
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = queued().await;
        if counts == Counts::default() {
            break;
        }
        assert!(Instant::now() < deadline, "still queued: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.shutdown().await;
    other.shutdown().await;
    let runs = RUNS.lock().unwrap().take().unwrap_or_default();
    assert_eq!(runs.len() as u64, TASKS);
    assert!(
        runs.values().all(|&count| count == 1),
        "tasks ran twice: {:?}",
        runs.iter()
            .filter(|(_, &count)| count > 1)
            .collect::<Vec<_>>()
    );
}

/// Makes a backend's checkpoint writes fail (`true`: the checkpoints table is renamed away from
/// another connection) or work again (`false`: renamed back).
pub type Outage = Arc<dyn Fn(bool) -> BoxFuture<'static, ()> + Send + Sync>;

/// Opened by the test once the checkpoint writes fail, so that the gated step records its
/// output during the outage.
static GATE: AtomicBool = AtomicBool::new(false);

#[tasker::step(max_attempts = 1)]
async fn suite_outage_reserve(order: u32) -> u32 {
    order * 10
}

#[tasker::step(max_attempts = 1)]
async fn suite_outage_charge(reservation: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !GATE.load(Ordering::SeqCst) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reservation + 1
}

#[tasker::step(max_attempts = 1)]
async fn suite_outage_ship(receipt: u32) -> u32 {
    receipt * 2
}

#[tasker::task(name = "suite_checkpoint_outage", version = "1.0.0")]
async fn suite_checkpoint_outage(order: u32) -> u32 {
    let reservation = suite_outage_reserve(order).await;
    let receipt = suite_outage_charge(reservation).await;
    suite_outage_ship(receipt).await
}

/// Runs `suite_checkpoint_outage` on a worker with `lease`, with the checkpoint writes failing
/// from the moment `suite_outage_charge` runs until `outage` has passed; returns the task's
/// events, the runs abandoned, and its output. Only one such test runs per binary at a time.
async fn run_through_a_checkpoint_outage(
    queue: Arc<dyn Queue>,
    break_writes: Outage,
    lease: Duration,
    outage: Duration,
) -> (Vec<String>, usize, Value) {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE_AT_A_TIME.lock().await;
    GATE.store(false, Ordering::SeqCst);
    let log = Arc::new(TaskLog::default());
    let _subscription = tasker::events::subscribe(Observe(log.clone()));
    let worker = Runtime::builder()
        .workers(1)
        .lease(lease)
        .shared_queue(queue)
        .build()
        .unwrap();
    let handle = worker
        .enqueue(TaskRequest::new("suite_checkpoint_outage", &7u32).unwrap())
        .await
        .unwrap();
    *log.task_id.lock().unwrap() = Some(handle.task_id());
    log.wait_for("the second step to start", |lines| {
        lines
            .iter()
            .any(|line| line == "step.handle suite_outage_charge")
    })
    .await;
    break_writes(true).await;
    GATE.store(true, Ordering::SeqCst);
    tokio::time::sleep(outage).await;
    // The step's output is not durable yet, so the step has not completed.
    assert!(
        !log.lines()
            .iter()
            .any(|line| line == "step.complete suite_outage_charge"),
        "a step completed while its checkpoint could not be written: {:#?}",
        log.lines()
    );
    break_writes(false).await;
    let output = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("the task finished within 30 s")
        .unwrap();
    worker.shutdown().await;
    (log.lines(), log.abandoned().len(), output)
}

/// A checkpoint write that fails for less than a lease is retried until it is written: the step
/// completes once, after the outage, and the run goes on in the same delivery.
pub async fn a_checkpoint_write_that_fails_briefly_is_retried_before_its_step_completes(
    queue: Arc<dyn Queue>,
    break_writes: Outage,
) {
    let (lines, abandoned, output) = run_through_a_checkpoint_outage(
        queue,
        break_writes,
        Duration::from_secs(5),
        Duration::from_millis(600),
    )
    .await;
    assert_eq!(
        lines,
        [
            "task.start",
            "task.handle",
            "step.handle suite_outage_reserve",
            "step.complete suite_outage_reserve",
            "step.handle suite_outage_charge",
            "step.complete suite_outage_charge",
            "step.handle suite_outage_ship",
            "step.complete suite_outage_ship",
            "task.finalize",
            "task.complete",
        ]
    );
    assert_eq!(abandoned, 0);
    assert_eq!(output, json!(142));
}

/// A checkpoint write that fails for longer than a lease stops the run as a lost lease does (no
/// `step.complete` for the step, no terminal event, the run abandoned); the next delivery
/// replays the step that completed and runs the stopped one again: each step completes once.
pub async fn a_checkpoint_that_cannot_be_written_within_the_lease_stops_the_run(
    queue: Arc<dyn Queue>,
    break_writes: Outage,
) {
    let (lines, abandoned, output) = run_through_a_checkpoint_outage(
        queue,
        break_writes,
        Duration::from_millis(600),
        Duration::from_millis(1000),
    )
    .await;
    assert_eq!(
        lines,
        [
            "task.start",
            "task.handle",
            "step.handle suite_outage_reserve",
            "step.complete suite_outage_reserve",
            "step.handle suite_outage_charge",
            "step.error suite_outage_charge tasker::Cancelled",
            "task.start",
            "task.handle",
            "step.skip suite_outage_reserve",
            "step.handle suite_outage_charge",
            "step.complete suite_outage_charge",
            "step.handle suite_outage_ship",
            "step.complete suite_outage_ship",
            "task.finalize",
            "task.complete",
        ]
    );
    assert_eq!(abandoned, 1);
    assert_eq!(output, json!(142));
}

/// How often `suite_retry_reserve` ran, by order.
static RETRY_RESERVES: Mutex<Option<HashMap<u32, u32>>> = Mutex::new(None);

#[tasker::step(max_attempts = 1)]
async fn suite_retry_reserve(order: u32) -> u32 {
    *RETRY_RESERVES
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(order)
        .or_default() += 1;
    order * 10
}

/// Fails its first attempt after its step completed; the second attempt, delivered again by
/// the queue, replays the step's checkpoint (on a queue that keeps them).
#[tasker::task(
    name = "suite_retried",
    version = "1.0.0",
    max_attempts = 2,
    backoff_ms = 50,
    jitter = 0.0
)]
async fn suite_retried(order: u32) -> Result<u32, String> {
    static ATTEMPTS: Mutex<Option<HashMap<u32, u32>>> = Mutex::new(None);
    let reservation = suite_retry_reserve(order).await;
    let attempt = {
        let mut attempts = ATTEMPTS.lock().unwrap();
        let attempt = attempts
            .get_or_insert_with(HashMap::new)
            .entry(order)
            .or_default();
        *attempt += 1;
        *attempt
    };
    if attempt == 1 {
        return Err(format!("the carrier refused order {order}"));
    }
    Ok(reservation + 1)
}

/// A queued task whose attempt failed is handed back to the queue after its backoff, not
/// completed: the next delivery runs attempt 2 (its own `task.start` and `task.handle`),
/// replaying the step the first attempt completed when the queue keeps checkpoints
/// (`checkpointed`), or running it again otherwise.
pub async fn a_failed_queued_attempt_is_delivered_again_and_replays_its_steps(
    queue: Arc<dyn Queue>,
    checkpointed: bool,
) {
    let log = Arc::new(TaskLog::default());
    let _subscription = tasker::events::subscribe(Observe(log.clone()));
    let order = 1000 + fastrand_order();
    let worker = Runtime::builder()
        .workers(1)
        .shared_queue(queue)
        .build()
        .unwrap();
    let handle = worker
        .enqueue(TaskRequest::new("suite_retried", &order).unwrap())
        .await
        .unwrap();
    *log.task_id.lock().unwrap() = Some(handle.task_id());
    let output = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("the task finished within 30 s")
        .unwrap();
    assert_eq!(output, json!(order * 10 + 1));
    let second_reserve = if checkpointed {
        vec!["step.skip suite_retry_reserve"]
    } else {
        vec![
            "step.handle suite_retry_reserve",
            "step.complete suite_retry_reserve",
        ]
    };
    let mut expected = vec![
        "task.start",
        "task.handle",
        "step.handle suite_retry_reserve",
        "step.complete suite_retry_reserve",
        "task.retry",
        "task.backoff",
        "task.start",
        "task.handle",
    ];
    expected.extend(second_reserve);
    expected.extend(["task.finalize", "task.complete"]);
    assert_eq!(log.lines(), expected);
    let runs = RETRY_RESERVES.lock().unwrap().as_ref().unwrap()[&order];
    assert_eq!(runs, if checkpointed { 1 } else { 2 });
    worker.shutdown().await;
}

/// An order number no other test of this binary uses.
fn fastrand_order() -> u32 {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

#[tasker::step(max_attempts = 1)]
async fn suite_wait_for_a_carrier() {
    std::future::pending::<()>().await
}

/// Hangs in every attempt.
#[tasker::task(
    name = "suite_hangs",
    version = "1.0.0",
    timeout_ms = 100,
    max_attempts = 2,
    backoff_ms = 10,
    jitter = 0.0
)]
async fn suite_hangs(order: u32) -> Result<u32, tasker::TaskTimeout> {
    suite_wait_for_a_carrier().await;
    Ok(order)
}

/// A queued task whose every attempt times out is stopped at its `timeout_ms` each time, not
/// held by its worker: two deliveries, then `task.error` with class `tasker::Timeout`.
pub async fn a_queued_task_that_times_out_in_every_attempt_ends_with_a_timeout(
    queue: Arc<dyn Queue>,
) {
    let log = Arc::new(TaskLog::default());
    let _subscription = tasker::events::subscribe(Observe(log.clone()));
    let worker = Runtime::builder()
        .workers(1)
        .shared_queue(queue)
        .build()
        .unwrap();
    let handle = worker
        .enqueue(TaskRequest::new("suite_hangs", &5u32).unwrap())
        .await
        .unwrap();
    *log.task_id.lock().unwrap() = Some(handle.task_id());
    let result = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("the timeouts ended the task within 30 s");
    assert_eq!(
        result,
        Err(tasker::TaskError::Failed {
            class: "tasker::Timeout".to_owned(),
            message: "task `suite_hangs` timed out after 100 ms (attempt 2)".to_owned(),
        })
    );
    assert_eq!(
        log.lines(),
        [
            "task.start",
            "task.handle",
            "step.handle suite_wait_for_a_carrier",
            "step.error suite_wait_for_a_carrier tasker::Cancelled",
            "task.retry",
            "task.backoff",
            "task.start",
            "task.handle",
            "step.handle suite_wait_for_a_carrier",
            "step.error suite_wait_for_a_carrier tasker::Cancelled",
            "task.finalize",
            "task.error",
        ]
    );
    worker.shutdown().await;
}

/// What a stored envelope column may hold, written by something other than tasker.
#[derive(Debug, Clone)]
pub enum Stored {
    /// Text (every backend).
    Text(String),
    /// Text whose bytes are not UTF-8 (SQLite keeps them; PostgreSQL refuses them).
    InvalidUtf8(Vec<u8>),
    /// A BLOB (SQLite's dynamic typing allows it in a text column).
    Blob(Vec<u8>),
}

impl Stored {
    /// The bytes a dead letter shows for it.
    fn bytes(&self) -> Vec<u8> {
        match self {
            Stored::Text(text) => text.clone().into_bytes(),
            Stored::InvalidUtf8(bytes) | Stored::Blob(bytes) => bytes.clone(),
        }
    }
}

/// A durable backend's fixture, besides its queue: its table, written and read directly.
pub trait Table: Send + Sync {
    /// The queue (`max_deliveries` = [`MAX_DELIVERIES`]).
    fn queue(&self) -> Arc<dyn Queue>;
    /// Inserts a ready row of the queue, task id `task_id`, holding `value` in its envelope
    /// column; `false` when the backend cannot hold such a value.
    fn insert<'a>(&'a self, task_id: &'a str, value: &'a Stored) -> BoxFuture<'a, bool>;
    /// The queue's `dead_letters()`.
    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>>;
    /// The queue's `dead_letters_page(after_id, limit)`.
    fn dead_letters_page(
        &self,
        after_id: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>>;
    /// The queue's `counts()`.
    fn counts(&self) -> BoxFuture<'_, Counts>;
    /// The queue's `counts_by_task()`.
    fn counts_by_task(&self) -> BoxFuture<'_, Result<Vec<TaskCounts>, QueueError>>;
    /// The queue's `retry_dead_letter(id)`.
    fn retry_dead_letter(&self, id: i64) -> BoxFuture<'_, Result<(), QueueError>>;
    /// The queue's `retry_dead_letters()`.
    fn retry_dead_letters(&self) -> BoxFuture<'_, Result<RetriedDeadLetters, QueueError>>;
    /// The queue's `purge_dead_letters()`.
    fn purge_dead_letters(&self) -> BoxFuture<'_, Result<u64, QueueError>>;
}

/// Garbage rows and the reason each is buried with.
fn garbage() -> Vec<(Stored, String)> {
    let good = Envelope::new("garbage", "1", json!({"id": 1})).encode();
    let good = String::from_utf8(good).unwrap();
    let mut other_format: Value = serde_json::from_str(&good).unwrap();
    other_format["format"] = 2.into();
    let mut invalid_utf8 = br#"{"format": 1, "task_name": ""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
    let oversized = format!(r#"{{"pad": "{}"}}"#, "x".repeat(MAX_ENVELOPE_BYTES - 10));
    let oversized_len = oversized.len();
    vec![
        (
            Stored::Blob(good.clone().into_bytes()),
            format!(
                "unreadable envelope: the `envelope` column holds a BLOB of {} bytes, not text",
                good.len()
            ),
        ),
        (
            Stored::InvalidUtf8(invalid_utf8),
            "unreadable envelope: the `envelope` column is not valid UTF-8 (invalid utf-8 \
             sequence of 1 bytes from index 28)"
                .to_owned(),
        ),
        (
            Stored::Text("42".to_owned()),
            "malformed envelope: invalid type: integer `42`, expected struct FormatProbe at \
             line 1 column 2"
                .to_owned(),
        ),
        (
            Stored::Text(String::new()),
            "malformed envelope: EOF while parsing a value at line 1 column 0".to_owned(),
        ),
        (
            Stored::Text("null".to_owned()),
            "malformed envelope: invalid type: null, expected struct FormatProbe at line 1 \
             column 4"
                .to_owned(),
        ),
        (
            Stored::Text("not json".to_owned()),
            "malformed envelope: expected ident at line 1 column 2".to_owned(),
        ),
        (
            Stored::Text(good[..good.len() / 2].to_owned()),
            format!(
                "malformed envelope: EOF while parsing a string at line 1 column {}",
                good.len() / 2
            ),
        ),
        (
            Stored::Text(other_format.to_string()),
            "unsupported envelope format 2; this version of tasker reads format 1".to_owned(),
        ),
        (
            Stored::Text(oversized),
            format!(
                "envelope of {oversized_len} bytes exceeds the limit of {MAX_ENVELOPE_BYTES} \
                 bytes"
            ),
        ),
    ]
}

/// Claims until the queue has nothing ready (at most `limit` claims), acknowledging each;
/// the task names in claim order.
async fn drain(queue: &Arc<dyn Queue>, limit: usize) -> Vec<String> {
    let mut names = Vec::new();
    while let Some(claim) = queue.claim(LEASE, Duration::ZERO).await.unwrap() {
        names.push(claim.envelope.task_name.clone());
        queue.acknowledge(claim.lease).await.unwrap();
        assert!(names.len() <= limit, "claimed more than {limit}: {names:?}");
    }
    names
}

/// Checks one dead letter of a buried row against what was written and why it was buried.
fn assert_buried(dead: &DeadLetter, task_id: &str, stored: &Stored, reason: &str) {
    let bytes = stored.bytes();
    assert_eq!(dead.task_id, task_id);
    assert_eq!(dead.reason, reason, "{task_id}");
    assert_eq!(dead.envelope, None, "{task_id}");
    assert_eq!(dead.size, bytes.len(), "{task_id}");
    assert_eq!(
        dead.raw,
        bytes[..bytes.len().min(DEAD_LETTER_RAW_BYTES)],
        "{task_id}"
    );
    assert_eq!(dead.delivery_attempt, 1, "{task_id}");
    assert!(dead.dead_at.is_some(), "{task_id}");
}

/// Rows that do not hold an envelope (each kind the backend can store), written ahead of 20
/// good envelopes, are buried with what is wrong with them as the claims reach them; every good
/// envelope is claimed, in push order.
pub async fn unreadable_rows_are_buried_and_every_good_envelope_is_claimed(table: &dyn Table) {
    let queue = table.queue();
    let mut written = Vec::new();
    for (index, (stored, reason)) in garbage().into_iter().enumerate() {
        let task_id = format!("garbage-{index}");
        if table.insert(&task_id, &stored).await {
            written.push((task_id, stored, reason));
        }
    }
    assert!(written.len() >= 6, "every backend stores the text kinds");
    let good: Vec<String> = (0..20).map(|index| format!("good-{index}")).collect();
    for name in &good {
        queue.push(envelope(name)).await.unwrap();
    }
    assert_eq!(drain(&queue, good.len()).await, good);
    let dead = table.dead_letters().await.unwrap();
    assert_eq!(dead.len(), written.len(), "{dead:#?}");
    for (dead, (task_id, stored, reason)) in dead.iter().zip(&written) {
        assert_buried(dead, task_id, stored, reason);
    }
    assert_eq!(
        table.counts().await,
        Counts {
            dead: written.len() as u64,
            ..Counts::default()
        }
    );
}

/// Rows that do not hold an envelope, among good envelopes, are buried as a batch comes to them;
/// the batches hand out every good envelope, in push order, each once.
pub async fn unreadable_rows_in_a_batch_are_buried_and_its_good_envelopes_claimed(
    table: &dyn Table,
) {
    let queue = table.queue();
    let good: Vec<String> = (0..6).map(|index| format!("good-{index}")).collect();
    let mut written = 0;
    for (index, (stored, _)) in garbage().into_iter().enumerate() {
        queue
            .push(envelope(&good[index % good.len()]))
            .await
            .unwrap();
        if table.insert(&format!("garbage-{index}"), &stored).await {
            written += 1;
        }
    }
    let mut claimed = Vec::new();
    loop {
        let batch = queue
            .claim_batch(4, LEASE, Duration::ZERO, Isolation::Shared)
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 4);
        for claim in batch {
            claimed.push(claim.envelope.task_name.clone());
            queue.acknowledge(claim.lease).await.unwrap();
        }
        assert!(claimed.len() <= 20, "claimed too many: {claimed:?}");
    }
    let pushed: Vec<String> = (0..garbage().len())
        .map(|index| good[index % good.len()].clone())
        .collect();
    assert_eq!(claimed, pushed);
    assert_eq!(table.dead_letters().await.unwrap().len(), written);
    assert_eq!(
        table.counts().await,
        Counts {
            dead: written as u64,
            ..Counts::default()
        }
    );
}

/// `dead_letters()` lists an envelope delivered as many times as allowed with its envelope,
/// and the rows buried for what they hold with theirs, oldest first.
pub async fn dead_letters_list_a_dead_envelope_and_buried_rows_with_their_fields(
    table: &dyn Table,
) {
    let queue = table.queue();
    let doomed = envelope("doomed");
    queue.push(doomed.clone()).await.unwrap();
    for _ in 0..MAX_DELIVERIES {
        let claim = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
        queue.requeue(claim.lease, Duration::ZERO).await.unwrap();
    }
    let (other_format, other_reason) = garbage().swap_remove(7);
    let (empty, empty_reason) = garbage().swap_remove(3);
    assert!(table.insert("other-format", &other_format).await);
    assert!(table.insert("empty", &empty).await);
    assert_eq!(drain(&queue, 0).await, Vec::<String>::new());
    let dead = table.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 3, "{dead:#?}");
    let encoded = doomed.encode();
    let mut kept = doomed.clone();
    kept.delivery_attempt = MAX_DELIVERIES + 1;
    assert_eq!(dead[0].task_id, doomed.task_id.to_string());
    assert_eq!(dead[0].task_name.as_deref(), Some("doomed"));
    assert_eq!(dead[0].envelope, Some(kept));
    assert_eq!(dead[0].reason, "requeued after its last delivery");
    assert_eq!(dead[0].delivery_attempt, MAX_DELIVERIES + 1);
    assert_eq!(dead[0].size, encoded.len());
    assert_eq!(dead[0].raw, encoded);
    assert!(dead[0].dead_at.is_some());
    assert_buried(&dead[1], "other-format", &other_format, &other_reason);
    assert_eq!(
        dead[1].task_name.as_deref(),
        Some("garbage"),
        "JSON of another format still names its task"
    );
    assert_buried(&dead[2], "empty", &empty, &empty_reason);
    assert_eq!(dead[2].task_name, None);
    assert!(dead[0].id < dead[1].id && dead[1].id < dead[2].id);
}

/// The operator's calls over a dead envelope and every kind of buried row the backend can
/// hold: counts by task (whatever the rows hold), retries (the envelope ready again with its
/// deliveries counted afresh; each buried row refused with what is wrong with it) and a purge.
pub async fn operators_count_retry_and_purge_every_kind_of_dead_row(table: &dyn Table) {
    let queue = table.queue();
    let mut written = Vec::new();
    for (index, (stored, reason)) in garbage().into_iter().enumerate() {
        let task_id = format!("garbage-{index}");
        if table.insert(&task_id, &stored).await {
            written.push(reason);
        }
    }
    let doomed = envelope("doomed");
    queue.push(doomed.clone()).await.unwrap();
    for _ in 0..MAX_DELIVERIES {
        let claim = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
        queue.requeue(claim.lease, Duration::ZERO).await.unwrap();
    }
    let dead = table.dead_letters().await.unwrap();
    assert_eq!(dead.len(), written.len() + 1, "{dead:#?}");
    let doomed_id = dead[written.len()].id;
    let total = Counts {
        dead: written.len() as u64 + 1,
        ..Counts::default()
    };
    assert_eq!(table.counts().await, total);

    let by_task = table.counts_by_task().await.unwrap();
    let summed = by_task.iter().fold(Counts::default(), |sum, group| Counts {
        dead: sum.dead + group.counts.dead,
        ready: sum.ready + group.counts.ready,
        delayed: sum.delayed + group.counts.delayed,
        leased: sum.leased + group.counts.leased,
    });
    assert_eq!(summed, total, "{by_task:#?}");
    let doomed_group = by_task
        .iter()
        .find(|group| group.task_name.as_deref() == Some("doomed"))
        .map(|group| group.counts);
    assert_eq!(
        doomed_group,
        Some(Counts {
            dead: 1,
            ..Counts::default()
        })
    );

    for (row, reason) in dead.iter().zip(&written) {
        match table.retry_dead_letter(row.id).await {
            Err(QueueError::UnreadableDeadLetter { id, reason: why }) => {
                assert_eq!((id, why.as_str()), (row.id, reason.as_str()))
            }
            other => panic!("retrying buried row {}: {other:?}", row.task_id),
        }
    }
    assert_eq!(
        table.retry_dead_letter(doomed_id + 1000).await,
        Err(QueueError::NoSuchDeadLetter {
            queue: queue.name().to_owned(),
            id: doomed_id + 1000
        })
    );
    let retried = table.retry_dead_letters().await.unwrap();
    assert_eq!(retried.retried, vec![doomed_id]);
    assert_eq!(
        retried.unreadable,
        dead.iter()
            .zip(&written)
            .map(|(row, reason)| (row.id, reason.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        table.counts().await,
        Counts {
            ready: 1,
            dead: written.len() as u64,
            ..Counts::default()
        }
    );
    // Its next delivery, numbered on; and as many deliveries again before it dies.
    for delivery in MAX_DELIVERIES + 1..2 * MAX_DELIVERIES + 1 {
        let claim = queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(
            (claim.envelope.task_id, claim.envelope.delivery_attempt),
            (doomed.task_id, delivery)
        );
        queue.requeue(claim.lease, Duration::ZERO).await.unwrap();
    }
    assert_eq!(table.counts().await.dead, written.len() as u64 + 1);

    assert_eq!(
        table.purge_dead_letters().await.unwrap(),
        written.len() as u64 + 1
    );
    assert_eq!(table.counts().await, Counts::default());
    assert_eq!(table.dead_letters().await.unwrap(), Vec::new());
}

/// `dead_letters_page` lists the dead rows a page at a time, exactly as `dead_letters` lists
/// them all; a dead envelope over `DEAD_LETTER_DECODED_BYTES` is listed by its first KiB and
/// its size, not read whole.
pub async fn dead_letters_come_a_page_at_a_time_and_large_envelopes_by_their_start(
    table: &dyn Table,
) {
    // Letters that do not compress (PostgreSQL measures the size as stored).
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let pad: String = (0..DEAD_LETTER_DECODED_BYTES * 4)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b'a' + u8::try_from(seed % 26).unwrap())
        })
        .collect();
    let large = format!(r#"{{"task_name": "large", "pad": "{pad}"}}"#);
    let rows = [
        Stored::Text("not json 1".to_owned()),
        Stored::Text(large.clone()),
        Stored::Text("not json 2".to_owned()),
    ];
    for (n, stored) in rows.iter().enumerate() {
        assert!(table.insert(&format!("row {n}"), stored).await);
    }
    assert_eq!(drain(&table.queue(), 0).await, Vec::<String>::new());
    let all = table.dead_letters().await.unwrap();
    let first = table.dead_letters_page(0, 2).await.unwrap();
    let second = table.dead_letters_page(first[1].id, 2).await.unwrap();
    let third = table.dead_letters_page(second[0].id, 2).await.unwrap();
    assert_eq!((first.len(), second.len(), third.len()), (2, 1, 0));
    assert_eq!([first, second].concat(), all);
    let big = &all[1];
    assert_eq!(big.task_id, "row 1");
    assert_eq!(
        (
            big.size,
            big.raw.as_slice(),
            big.envelope.is_none(),
            big.task_name.as_deref()
        ),
        (
            large.len(),
            &large.as_bytes()[..DEAD_LETTER_RAW_BYTES],
            true,
            None
        )
    );
}
