//! Every signature shape `#[tasker::step]` and `#[tasker::task]` support, compiled with warnings
//! denied (so generated code must not warn) and called once each: the value is what the body
//! returns, and the call emitted its lifecycle events.
#![deny(warnings)]

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use tasker::testing::Capture;

const STEP: &[&str] = &["step.handle", "step.complete"];

/// Runs `call` inside a fresh capture and returns its value and the captured event names.
fn captured<R>(call: impl FnOnce() -> R) -> (R, Vec<String>) {
    let capture = Capture::new();
    let value = capture.run(call);
    (value, capture.names())
}

/// The same for a future, on a current-thread Tokio runtime with timers.
fn captured_async<F: Future>(future: F) -> (F::Output, Vec<String>) {
    let capture = Capture::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let value = runtime.block_on(capture.wrap(future));
    (value, capture.names())
}

// ---------------------------------------------------------------------------------------------
// Free functions, sync and async.

#[tasker::step]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[tasker::step]
async fn double(value: u64) -> u64 {
    value * 2
}

#[test]
fn sync_free_fn() {
    assert_eq!(captured(|| add(2, 3)), (5, names(STEP)));
}

#[test]
fn async_free_fn() {
    assert_eq!(captured_async(double(21)), (42, names(STEP)));
}

// ---------------------------------------------------------------------------------------------
// Methods: `&self`, `&mut self`, `self` (no retry), sync and async.

struct Counter {
    count: u32,
    label: String,
}

impl Counter {
    #[tasker::step]
    fn get(&self) -> u32 {
        self.count
    }

    #[tasker::step]
    fn increment(&mut self, by: u32) -> u32 {
        self.count += by;
        self.count
    }

    #[tasker::step(max_attempts = 1)]
    fn into_count(self) -> u32 {
        self.count
    }

    #[tasker::step]
    async fn get_async(&self) -> u32 {
        self.count
    }

    #[tasker::step]
    async fn increment_async(&mut self, by: u32) -> u32 {
        self.count += by;
        self.count
    }

    #[tasker::step(max_attempts = 1)]
    async fn into_label(self) -> String {
        self.label
    }

    /// A reference tied to `self` by elision.
    #[tasker::step]
    fn label(&self) -> &str {
        &self.label
    }
}

fn counter() -> Counter {
    Counter {
        count: 1,
        label: "apples".to_owned(),
    }
}

#[test]
fn methods_taking_self_in_every_way() {
    let mut counter = counter();
    assert_eq!(captured(|| counter.get()), (1, names(STEP)));
    assert_eq!(captured(|| counter.increment(2)), (3, names(STEP)));
    assert_eq!(captured(|| counter.label().to_owned()).0, "apples");
    assert_eq!(captured(|| counter.into_count()), (3, names(STEP)));

    let mut counter = self::counter();
    assert_eq!(captured_async(counter.get_async()), (1, names(STEP)));
    assert_eq!(captured_async(counter.increment_async(4)), (5, names(STEP)));
    assert_eq!(
        captured_async(counter.into_label()),
        ("apples".to_owned(), names(STEP))
    );
}

// ---------------------------------------------------------------------------------------------
// Generics, where-clauses, `impl Trait` in argument and return position.

#[tasker::step]
fn largest<T: PartialOrd + Copy>(items: &[T]) -> Option<T> {
    let mut best = *items.first()?;
    for &item in items {
        if item > best {
            best = item;
        }
    }
    Some(best)
}

#[tasker::step]
fn describe<T, U>(key: T, value: &U) -> String
where
    T: Display + Clone,
    U: Display + ?Sized,
{
    format!("{key}={value}")
}

#[tasker::step]
async fn echo<T>(value: T) -> T
where
    T: Clone + Send,
{
    value
}

/// By value with retries: the bound must include `Clone`.
#[tasker::step]
fn shout(text: impl AsRef<str> + Clone) -> String {
    text.as_ref().to_uppercase()
}

/// By value without retries: no `Clone` needed.
#[tasker::step(max_attempts = 1)]
fn sum(values: impl IntoIterator<Item = u32>) -> u32 {
    values.into_iter().sum()
}

/// By reference: never cloned.
#[tasker::step]
fn length(text: &impl AsRef<str>) -> usize {
    text.as_ref().len()
}

#[tasker::step]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

#[tasker::step]
async fn greeting(name: &str) -> impl Display + '_ {
    format!("hello, {name}")
}

#[test]
fn generics_and_where_clauses() {
    assert_eq!(captured(|| largest(&[3, 9, 4])), (Some(9), names(STEP)));
    assert_eq!(captured(|| largest::<u8>(&[])), (None, names(STEP)));
    assert_eq!(captured(|| describe(7, "seven")).0, "7=seven");
    assert_eq!(captured_async(echo(vec![1, 2])), (vec![1, 2], names(STEP)));
}

#[test]
fn impl_trait_arguments() {
    assert_eq!(captured(|| shout("hi")), ("HI".to_owned(), names(STEP)));
    assert_eq!(captured(|| sum(vec![1, 2, 3])), (6, names(STEP)));
    assert_eq!(captured(|| length(&"four")), (4, names(STEP)));
}

#[test]
fn impl_trait_returns() {
    let (values, events) = captured(|| evens(7).collect::<Vec<_>>());
    assert_eq!((values, events), (vec![0, 2, 4, 6], names(STEP)));
    let (text, events) = captured_async(async { greeting("ada").await.to_string() });
    assert_eq!((text.as_str(), events), ("hello, ada", names(STEP)));
}

// ---------------------------------------------------------------------------------------------
// Native `async fn` in a trait (a default body and an implementation), and `#[async_trait]`.

trait Inventory {
    fn stock(&self) -> u32;

    #[tasker::step]
    async fn reserve(&self, quantity: u32) -> Result<u32, io::Error> {
        if quantity > self.stock() {
            return Err(io::Error::other("not enough stock"));
        }
        Ok(self.stock() - quantity)
    }

    async fn restock(&mut self, quantity: u32) -> u32;
}

struct Warehouse {
    stock: u32,
}

impl Inventory for Warehouse {
    fn stock(&self) -> u32 {
        self.stock
    }

    #[tasker::step(max_attempts = 1)]
    async fn restock(&mut self, quantity: u32) -> u32 {
        self.stock += quantity;
        self.stock
    }
}

#[async_trait::async_trait]
trait Payments {
    async fn charge(&self, amount: u32) -> Result<u32, io::Error>;
    async fn refund(&mut self, amount: u32) -> u32;
}

struct Card {
    balance: u32,
}

#[async_trait::async_trait]
impl Payments for Card {
    #[tasker::step(backoff_ms = 1)]
    async fn charge(&self, amount: u32) -> Result<u32, io::Error> {
        self.balance
            .checked_sub(amount)
            .ok_or_else(|| io::Error::other("insufficient funds"))
    }

    #[tasker::step]
    async fn refund(&mut self, amount: u32) -> u32 {
        self.balance += amount;
        self.balance
    }
}

#[test]
fn async_fn_in_trait_default_body_and_impl() {
    let mut warehouse = Warehouse { stock: 5 };
    let (reserved, events) = captured_async(warehouse.reserve(2));
    assert_eq!((reserved.unwrap(), events), (3, names(STEP)));
    assert_eq!(captured_async(warehouse.restock(4)), (9, names(STEP)));
}

#[test]
fn async_trait_methods() {
    let mut card = Card { balance: 10 };
    let (charged, events) = captured_async(card.charge(4));
    assert_eq!((charged.unwrap(), events), (6, names(STEP)));
    assert_eq!(captured_async(card.refund(5)), (15, names(STEP)));
}

#[test]
fn async_trait_method_failing_is_retried() {
    let card = Card { balance: 1 };
    let (charged, events) = captured_async(card.charge(4));
    assert_eq!(charged.unwrap_err().to_string(), "insufficient funds");
    assert_eq!(events, names(&retried_three_times()));
}

// ---------------------------------------------------------------------------------------------
// Argument patterns.

#[tasker::step]
fn sum_pair((a, b): (u32, u32)) -> u32 {
    a + b
}

#[tasker::step]
fn countdown(mut from: u32, mut steps: Vec<u32>) -> Vec<u32> {
    while from > 0 {
        steps.push(from);
        from -= 1;
    }
    steps
}

#[tasker::step]
async fn swap_pair((a, b): (String, String)) -> (String, String) {
    (b, a)
}

#[tasker::step]
fn first_word(text: &str) -> &str {
    text.split(' ').next().unwrap_or(text)
}

#[test]
fn pattern_and_mut_arguments() {
    assert_eq!(captured(|| sum_pair((4, 5))), (9, names(STEP)));
    assert_eq!(
        captured(|| countdown(3, vec![9])),
        (vec![9, 3, 2, 1], names(STEP))
    );
    let pair = ("left".to_owned(), "right".to_owned());
    let (swapped, events) = captured_async(swap_pair(pair));
    assert_eq!(swapped, ("right".to_owned(), "left".to_owned()));
    assert_eq!(events, names(STEP));
}

#[test]
fn reference_return_with_elided_lifetime() {
    let text = String::from("hello world");
    assert_eq!(captured(|| first_word(&text)), ("hello", names(STEP)));
}

// ---------------------------------------------------------------------------------------------
// Return types: `io::Result`, `anyhow::Result`, an alias, unit; `?` and early `return`.

/// A crate-style `Result` alias, kept in its own module so it does not shadow `Result` above.
mod shop {
    use std::io;

    #[derive(Debug, thiserror::Error)]
    pub(crate) enum ShopError {
        #[error("item {0} is unknown")]
        Unknown(u32),
        #[error(transparent)]
        Io(#[from] io::Error),
    }

    pub(crate) type Result<T> = std::result::Result<T, ShopError>;

    #[tasker::step]
    pub(crate) fn read_config(text: &str) -> io::Result<u32> {
        let value = text
            .trim()
            .parse::<u32>()
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        Ok(value)
    }

    #[tasker::step]
    pub(crate) fn price(item: u32) -> anyhow::Result<u32> {
        if item == 0 {
            anyhow::bail!("item 0 is free");
        }
        Ok(item * 10)
    }

    #[tasker::step(max_attempts = 1)]
    pub(crate) fn lookup(item: u32) -> Result<u32> {
        if item > 100 {
            return Err(ShopError::Unknown(item));
        }
        let stock = read_stock(item)?;
        Ok(stock)
    }

    fn read_stock(item: u32) -> io::Result<u32> {
        Ok(item + 1)
    }

    fn nothing_to_charge(amount: &u32, _note: &str) -> bool {
        *amount == 0
    }

    #[tasker::step(skip_if = nothing_to_charge)]
    pub(crate) fn charge_card(amount: u32, note: &str) -> Result<u32> {
        assert!(!note.is_empty());
        Ok(amount)
    }
}

use shop::{charge_card, lookup, price, read_config};

#[tasker::step]
fn log_line(line: &str) {
    assert!(!line.is_empty());
}

#[tasker::step]
async fn log_line_async(line: String) {
    assert!(!line.is_empty());
}

#[test]
fn result_types_and_aliases() {
    assert_eq!(captured(|| read_config(" 7 ").unwrap()), (7, names(STEP)));
    assert_eq!(captured(|| price(3).unwrap()), (30, names(STEP)));
    assert_eq!(captured(|| lookup(4).unwrap()), (5, names(STEP)));
}

#[test]
fn question_mark_and_early_return_fail_the_step() {
    let (error, events) = captured(|| lookup(101).unwrap_err().to_string());
    assert_eq!(error, "item 101 is unknown");
    // `max_attempts = 1`: the only attempt was the last one allowed.
    assert_eq!(
        events,
        names(&["step.handle", "step.error", "step.max_retries_reached"])
    );
}

#[test]
fn unit_returns() {
    assert_eq!(captured(|| log_line("hello")), ((), names(STEP)));
    assert_eq!(
        captured_async(log_line_async("hello".to_owned())),
        ((), names(STEP))
    );
}

// ---------------------------------------------------------------------------------------------
// Attribute keys.

fn is_transient(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Interrupted
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[tasker::step(max_attempts = 3, backoff_ms = 1, retry_if = is_transient)]
fn flaky(fail_times: u32) -> io::Result<u32> {
    let call = FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    if call < fail_times {
        return Err(io::ErrorKind::Interrupted.into());
    }
    Ok(call)
}

#[tasker::step(max_attempts = 3, backoff_ms = 1, retry_if = is_transient)]
fn denied() -> io::Result<u32> {
    Err(io::ErrorKind::PermissionDenied.into())
}

#[tasker::step(fields(order_id, total = amount * 2, email = "a@example.com"))]
fn with_fields(order_id: u64, amount: u32) -> u32 {
    assert!(order_id > 0);
    amount
}

#[tasker::step(timeout_ms = 1000, backoff_ms = 1)]
async fn timed(delay_ms: u64) -> anyhow::Result<u64> {
    tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
    Ok(delay_ms)
}

#[tasker::step(timeout_ms = 5, max_attempts = 2, backoff_ms = 1)]
async fn too_slow() -> anyhow::Result<()> {
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    Ok(())
}

#[tasker::step(
    name = "custom.step-name",
    skippable,
    crate = tasker,
    max_attempts = 5,
    backoff_ms = 1,
    backoff_multiplier = 1.5,
    max_backoff_ms = 10,
    jitter = 0.0
)]
fn every_policy_key(value: u32) -> u32 {
    value
}

fn no_discount(code: &str) -> bool {
    code.is_empty()
}

#[tasker::step(skip_if = no_discount)]
fn discount(code: &str) -> Option<u32> {
    code.strip_prefix("SAVE")
        .and_then(|percent| percent.parse().ok())
}

struct Order {
    gift: bool,
}

fn no_gift_wrap(order: &Order) -> bool {
    !order.gift
}

#[tasker::step(skip_if = no_gift_wrap)]
async fn gift_wrap(order: &Order) -> Result<(), io::Error> {
    assert!(order.gift);
    Ok(())
}

#[test]
fn skip_if_skips_with_default_value() {
    let (charged, events) = captured(|| charge_card(0, "nothing").unwrap());
    assert_eq!((charged, events), (0, names(&["step.skip"])));
    assert_eq!(
        captured(|| charge_card(8, "card").unwrap()),
        (8, names(STEP))
    );
    assert_eq!(captured(|| discount("")), (None, names(&["step.skip"])));
    assert_eq!(captured(|| discount("SAVE10")), (Some(10), names(STEP)));
    let (wrapped, events) = captured_async(gift_wrap(&Order { gift: false }));
    assert_eq!((wrapped.unwrap(), events), ((), names(&["step.skip"])));
    let (wrapped, events) = captured_async(gift_wrap(&Order { gift: true }));
    assert_eq!((wrapped.unwrap(), events), ((), names(STEP)));
}

#[test]
fn retry_if_retries_transient_errors_only() {
    FLAKY_CALLS.store(0, Ordering::SeqCst);
    let (value, events) = captured(|| flaky(2).unwrap());
    assert_eq!(value, 2);
    assert_eq!(
        events,
        names(&[
            "step.handle",
            "step.error",
            "step.retry",
            "step.backoff",
            "step.handle",
            "step.error",
            "step.retry",
            "step.backoff",
            "step.handle",
            "step.complete",
        ])
    );
    let (error, events) = captured(|| denied().unwrap_err().kind());
    assert_eq!(error, io::ErrorKind::PermissionDenied);
    assert_eq!(events, names(&["step.handle", "step.error"]));
}

#[test]
fn fields_are_recorded_and_masked() {
    let capture = Capture::new();
    assert_eq!(capture.run(|| with_fields(17, 4)), 4);
    let events = capture.json();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0]["fields"],
        serde_json::json!({"order_id": 17, "total": 8, "email": "[FILTERED]"})
    );
}

#[test]
fn timeout_ms_with_anyhow_result() {
    assert_eq!(
        captured_async(async { timed(1).await.unwrap() }),
        (1, names(STEP))
    );
    let (error, events) = captured_async(async { too_slow().await.unwrap_err() });
    assert!(error.is::<tasker::StepTimeout>(), "{error:#}");
    assert_eq!(
        events,
        names(&[
            "step.handle",
            "step.error",
            "step.retry",
            "step.backoff",
            "step.handle",
            "step.error",
            "step.max_retries_reached",
        ])
    );
}

#[test]
fn name_skippable_and_crate_override() {
    let capture = Capture::new();
    assert_eq!(capture.run(|| every_policy_key(3)), 3);
    let events = capture.events();
    assert_eq!(events[0].step_name(), Some("custom.step-name"));
    assert_eq!(events[0].max_attempts(), Some(5));
    capture.assert_names(STEP);
}

// ---------------------------------------------------------------------------------------------
// Tasks: sync, async, and as a method.

#[tasker::task(name = "kitchen.sync", version = "1.2.3")]
fn sync_task(a: u32, b: u32) -> u32 {
    add(a, b)
}

#[tasker::task]
async fn async_task(value: u64) -> io::Result<u64> {
    let doubled = double(value).await;
    if doubled == 0 {
        return Err(io::Error::other("zero"));
    }
    Ok(doubled)
}

struct Shop {
    card: Card,
}

impl Shop {
    #[tasker::task(name = "kitchen.checkout")]
    async fn checkout(&self, amount: u32) -> std::result::Result<u32, io::Error> {
        self.card.charge(amount).await
    }

    #[tasker::task]
    fn audit(&mut self) -> u32 {
        self.card.balance
    }

    /// An associated function whose signature names `Self`: it runs inline only (what enqueues
    /// a task cannot name `Self`).
    #[tasker::task(name = "kitchen.open")]
    fn open(balance: u32) -> Self {
        Shop {
            card: Card { balance },
        }
    }

    /// An associated function that shows neither `self` nor `Self` says so with `associated`.
    #[tasker::task(name = "kitchen.fee", associated)]
    fn fee(amount: u32) -> u32 {
        amount / 10
    }
}

const TASK_WITH_STEP: &[&str] = &[
    "task.initialize",
    "task.start",
    "task.handle",
    "step.handle",
    "step.complete",
    "task.finalize",
    "task.complete",
];

#[test]
fn sync_task_runs_its_steps() {
    let capture = Capture::new();
    assert_eq!(capture.run(|| sync_task(1, 2)), 3);
    capture.assert_names(TASK_WITH_STEP);
    assert_eq!(capture.events()[0].task_name(), Some("kitchen.sync"));
}

#[test]
fn async_task_runs_its_steps() {
    assert_eq!(
        captured_async(async { async_task(4).await.unwrap() }),
        (8, names(TASK_WITH_STEP))
    );
}

#[test]
fn task_methods() {
    let mut shop = Shop {
        card: Card { balance: 9 },
    };
    let (paid, events) = captured_async(shop.checkout(5));
    assert_eq!((paid.unwrap(), events), (4, names(TASK_WITH_STEP)));
    let (balance, events) = captured(|| shop.audit());
    assert_eq!(balance, 9);
    assert_eq!(
        events,
        names(&[
            "task.initialize",
            "task.start",
            "task.handle",
            "task.finalize",
            "task.complete",
        ])
    );
}

#[test]
fn associated_task_functions() {
    let plain_task = names(&[
        "task.initialize",
        "task.start",
        "task.handle",
        "task.finalize",
        "task.complete",
    ]);
    let (shop, events) = captured(|| Shop::open(3));
    assert_eq!((shop.card.balance, events), (3, plain_task.clone()));
    let (fee, events) = captured(|| Shop::fee(50));
    assert_eq!((fee, events), (5, plain_task));
}

// ---------------------------------------------------------------------------------------------

fn names(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|name| (*name).to_owned()).collect()
}

fn retried_three_times() -> Vec<&'static str> {
    vec![
        "step.handle",
        "step.error",
        "step.retry",
        "step.backoff",
        "step.handle",
        "step.error",
        "step.retry",
        "step.backoff",
        "step.handle",
        "step.error",
        "step.max_retries_reached",
    ]
}
