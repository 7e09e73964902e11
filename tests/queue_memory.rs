//! `MemoryQueue`: the queue behaviour every backend shares, run by the same suite as the durable
//! queues (`tests/queue_suite`). Only what a queue that lives and dies with its process can do:
//! it keeps no checkpoints and no dead letters, and counts no deliveries toward a limit.

#[macro_use]
mod queue_suite;
mod support;

use std::sync::Arc;

use tasker::queue::MemoryQueue;

struct Fixture {
    queue: Arc<MemoryQueue>,
}

async fn fresh() -> Option<Fixture> {
    Some(Fixture {
        queue: Arc::new(MemoryQueue::new()),
    })
}

queue_suite!(@tests fresh;
    claims_come_out_in_push_order,
    an_expired_lease_hands_the_envelope_out_again,
    a_renewed_lease_does_not_expire,
    requeued_envelope_waits_out_its_delay,
    a_waiting_claim_wakes_up_on_push,
    a_late_acknowledge_of_an_expired_lease_is_refused,
    unknown_leases_are_lost,
    envelopes_round_trip_through_the_backend,
    concurrent_claims_never_share_an_envelope,
    the_next_delivery_carries_the_run_an_earlier_one_recorded,
    a_task_whose_lease_is_taken_stops_without_a_terminal_event,
);

/// An acknowledged envelope leaves nothing behind: the queue holds no envelope and no run record.
#[tokio::test]
async fn an_acknowledged_envelope_leaves_the_queue_empty() {
    use std::time::Duration;
    use tasker::queue::Queue;
    let queue = MemoryQueue::new();
    queue.push(queue_suite::envelope("a")).await.unwrap();
    let claim = queue
        .claim(queue_suite::LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((queue.len(), queue.is_empty()), (1, false));
    queue.acknowledge(claim.lease).await.unwrap();
    assert_eq!((queue.len(), queue.is_empty()), (0, true));
}
