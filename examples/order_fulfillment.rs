//! An order workflow instrumented with Tasker.
//!
//! Two orders are enqueued by name through a `tasker::Runtime` and run by its workers: the first
//! recovers from a flaky inventory service after two retries, skips gift wrapping, and reserves
//! stock and charges the card concurrently; the second order's card is declined on every
//! attempt, so it fails for good. With the default logger every lifecycle event is printed as
//! `[Tasker] <event>` with its payload as fields; a custom adapter tallies the event kinds.
//!
//! Run it with `cargo run --example order_fulfillment`. With `-- --console` (or
//! `TASKER_CONSOLE=1`) the console trace view replaces the logger: each order's tree of steps,
//! attempts, backoffs and skips is printed when its task ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use tasker::telemetry::{Adapter, Event};
use tasker::TelemetryAdapter;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    items: Vec<String>,
    card: String,
    gift: bool,
}

#[derive(Debug)]
struct Reservation {
    items: usize,
}

#[derive(Debug)]
struct Receipt {
    amount_cents: u64,
}

#[derive(Debug, serde::Serialize)]
struct Shipment {
    tracking: String,
}

#[derive(Debug, thiserror::Error)]
enum FulfillError {
    #[error("order {0} has no items")]
    Empty(u64),
    #[error("inventory service unavailable")]
    InventoryUnavailable,
    #[error("card {0} declined")]
    CardDeclined(String),
}

/// The inventory service answers on the third call only.
static INVENTORY_CALLS: AtomicU32 = AtomicU32::new(0);

#[tasker::step(max_attempts = 1)]
fn validate(order: &Order) -> Result<(), FulfillError> {
    if order.items.is_empty() {
        return Err(FulfillError::Empty(order.id));
    }
    Ok(())
}

#[tasker::step(max_attempts = 3, backoff_ms = 50)]
async fn reserve_inventory(order: &Order) -> Result<Reservation, FulfillError> {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    if INVENTORY_CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err(FulfillError::InventoryUnavailable);
    }
    Ok(Reservation {
        items: order.items.len(),
    })
}

#[tasker::step(max_attempts = 2, backoff_ms = 20, fields(order_id = order.id))]
async fn charge(order: &Order) -> Result<Receipt, FulfillError> {
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    if order.card == "4000-0000-0000-0002" {
        return Err(FulfillError::CardDeclined(order.card.clone()));
    }
    Ok(Receipt {
        amount_cents: 1999 * order.items.len() as u64,
    })
}

fn no_gift_wrap(order: &Order) -> bool {
    !order.gift
}

#[tasker::step(skip_if = no_gift_wrap)]
async fn gift_wrap(order: &Order) -> Result<(), FulfillError> {
    let _ = order;
    Ok(())
}

#[tasker::step(max_attempts = 1)]
async fn ship(reservation: &Reservation, receipt: &Receipt) -> Result<Shipment, FulfillError> {
    Ok(Shipment {
        tracking: format!("TRK-{}-{}", reservation.items, receipt.amount_cents),
    })
}

#[tasker::task(name = "order_fulfillment", version = "1.0.0")]
async fn fulfill(order: Order) -> Result<Shipment, FulfillError> {
    validate(&order)?;
    let (reservation, receipt) = tasker::join!(reserve_inventory(&order), charge(&order));
    let (reservation, receipt) = (reservation?, receipt?);
    gift_wrap(&order).await?;
    ship(&reservation, &receipt).await
}

/// Events seen by [`SharedTally`], by name.
static TALLY: Mutex<Option<BTreeMap<String, usize>>> = Mutex::new(None);

/// A custom adapter: counts the events of each kind, in a static so `main` can print it.
#[derive(Default)]
pub struct SharedTally;

impl Adapter for SharedTally {
    fn record(&self, event: &Event<'_>) {
        let mut tally = TALLY.lock().unwrap_or_else(|e| e.into_inner());
        *tally
            .get_or_insert_with(BTreeMap::new)
            .entry(event.name().to_owned())
            .or_default() += 1;
    }
}

tasker::register_adapter!(SharedTally);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo tasker tasks --example order_fulfillment` runs this with TASKER_LIST_TASKS=1.
    tasker::list_registered_and_exit_if_requested();
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    let console = std::env::args().any(|arg| arg == "--console")
        || std::env::var("TASKER_CONSOLE").is_ok_and(|value| value == "1" || value == "true");
    let view = if console {
        TelemetryAdapter::Console
    } else {
        TelemetryAdapter::Default
    };
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![view, TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec!["order_fulfillment::SharedTally".into()];
    })?;

    let orders = [
        Order {
            id: 1001,
            items: vec!["keyboard".into(), "mouse".into()],
            card: "4242-4242-4242-4242".into(),
            gift: false,
        },
        Order {
            id: 1002,
            items: vec!["monitor".into()],
            card: "4000-0000-0000-0002".into(),
            gift: true,
        },
    ];

    // One worker, so the two orders' lines do not interleave.
    let runtime = tasker::Runtime::builder().workers(1).build()?;
    for order in &orders {
        let handle = runtime
            .enqueue(tasker::TaskRequest::new("order_fulfillment", order)?)
            .await?;
        match handle.wait().await {
            Ok(shipment) => println!("order {} shipped: {}", order.id, shipment["tracking"]),
            Err(error) => println!("order {} failed: {error}", order.id),
        }
    }
    runtime.shutdown().await;

    let tally = TALLY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    println!("\n{} event kinds seen:", tally.len());
    for (name, count) in &tally {
        println!("  {name:<26} {count}");
    }
    Ok(())
}
