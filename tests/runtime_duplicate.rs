//! Two tasks with one name and version: the runtime refuses to start, naming both.

#[tasker::task(name = "invoice", version = "2.0.0")]
async fn invoice(id: u64) -> u64 {
    id
}

mod billing {
    #[tasker::task(name = "invoice", version = "2.0.0")]
    pub async fn invoice_again(id: u64) -> u64 {
        id + 1
    }
}

#[tokio::test]
async fn duplicate_tasks_stop_the_runtime_from_starting() {
    let error = tasker::Runtime::builder().build().unwrap_err();
    assert_eq!(
        error.to_string(),
        "task `invoice` version `2.0.0` is registered twice: at tests/runtime_duplicate.rs:4 and \
         at tests/runtime_duplicate.rs:10; give one of them another name or version"
    );
    // Both still run inline.
    assert_eq!(invoice(1).await + billing::invoice_again(1).await, 3);
}

#[test]
fn building_outside_tokio_is_an_error() {
    assert_eq!(
        tasker::Runtime::builder().build().unwrap_err(),
        tasker::BuildError::NoTokioRuntime
    );
}
