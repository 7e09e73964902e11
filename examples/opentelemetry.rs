//! The order workflow exported to OpenTelemetry: a trace per order, a span per step, and the
//! `tasker.*` metrics, sent over OTLP to `OTEL_EXPORTER_OTLP_ENDPOINT` (default
//! `http://localhost:4318`, HTTP/protobuf; set `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` and port 4317
//! for gRPC).
//!
//! ```sh
//! docker run --rm -p 16686:16686 -p 4317:4317 -p 4318:4318 jaegertracing/all-in-one
//! OTEL_SERVICE_NAME=orders cargo run --example opentelemetry --features opentelemetry
//! # then open http://localhost:16686 and look for the service `orders`
//! ```
//!
//! Without a collector it still runs to completion: exports happen in the background, and the
//! first export error is reported once.

use std::sync::atomic::{AtomicU32, Ordering};

use tasker::telemetry::otel;
use tasker::TelemetryAdapter;

#[derive(Debug, Clone)]
struct Order {
    id: u64,
    items: Vec<&'static str>,
    card: &'static str,
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

#[derive(Debug, thiserror::Error)]
enum FulfillError {
    #[error("order {0} has no items")]
    Empty(u64),
    #[error("inventory service unavailable")]
    InventoryUnavailable,
    #[error("card {0} declined")]
    CardDeclined(&'static str),
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
        return Err(FulfillError::CardDeclined(order.card));
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
async fn ship(reservation: &Reservation, receipt: &Receipt) -> Result<String, FulfillError> {
    Ok(format!(
        "TRK-{}-{}",
        reservation.items, receipt.amount_cents
    ))
}

#[tasker::task(name = "order_fulfillment", version = "1.0.0")]
async fn fulfill(order: Order) -> Result<String, FulfillError> {
    validate(&order)?;
    let (reservation, receipt) = tasker::join!(reserve_inventory(&order), charge(&order));
    let (reservation, receipt) = (reservation?, receipt?);
    gift_wrap(&order).await?;
    ship(&reservation, &receipt).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    // Tracer and meter providers from the OTEL_* variables, installed globally; dropping the
    // guard flushes them.
    let otel = otel::init_from_env()?;
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
    })?;

    let orders = [
        Order {
            id: 1001,
            items: vec!["keyboard", "mouse"],
            card: "4242-4242-4242-4242",
            gift: false,
        },
        Order {
            id: 1002,
            items: vec!["monitor"],
            card: "4000-0000-0000-0002",
            gift: true,
        },
    ];
    for order in orders {
        let id = order.id;
        match fulfill(order).await {
            Ok(tracking) => println!("order {id} shipped: {tracking}"),
            Err(error) => println!("order {id} failed: {error}"),
        }
    }

    otel.flush();
    let errors = otel.export_errors();
    if errors.spans + errors.metrics > 0 {
        println!(
            "could not reach the collector ({} span and {} metric exports failed); is one \
             listening at OTEL_EXPORTER_OTLP_ENDPOINT?",
            errors.spans, errors.metrics
        );
    } else {
        println!("exported: look for the `task.order_fulfillment` traces in your backend");
    }
    Ok(())
}
