//! On a durable queue, a task's completion — how it ended, with its output or error — is
//! committed with the removal of its envelope, and can be read back by task id.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::sync::Arc;

use tasker::queue::{Completion, PostgresQueue, SqliteQueue};
use tasker::{Runtime, TaskError, TaskRequest};

#[tasker::task(name = "completion_total", version = "1.0.0")]
async fn total(prices: Vec<u32>) -> Result<u32, String> {
    if prices.is_empty() {
        return Err("nothing to add up".to_owned());
    }
    Ok(prices.iter().sum())
}

async fn run_two(runtime: &Runtime) -> (uuid::Uuid, uuid::Uuid) {
    let ok = runtime
        .enqueue(TaskRequest::new("completion_total", &vec![3u32, 4]).unwrap())
        .await
        .unwrap();
    let failed = runtime
        .enqueue(TaskRequest::new("completion_total", &Vec::<u32>::new()).unwrap())
        .await
        .unwrap();
    let ids = (ok.task_id(), failed.task_id());
    // Bounded waits: a regression fails the test instead of hanging it.
    let deadline = std::time::Duration::from_secs(30);
    let ok = tokio::time::timeout(deadline, ok.wait()).await;
    assert_eq!(ok.expect("the first task ended"), Ok(serde_json::json!(7)));
    let failed = tokio::time::timeout(deadline, failed.wait()).await;
    assert!(matches!(
        failed.expect("the second task ended"),
        Err(TaskError::Failed { .. })
    ));
    ids
}

fn expected() -> (Completion, Completion) {
    (
        Completion {
            succeeded: true,
            output: Some(serde_json::json!(7)),
            error: None,
        },
        Completion {
            succeeded: false,
            output: None,
            error: Some("task failed with alloc::string::String: nothing to add up".to_owned()),
        },
    )
}

#[tokio::test]
async fn sqlite_keeps_each_tasks_completion() {
    let dir = std::env::temp_dir().join(format!("tasker-completion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let queue = Arc::new(SqliteQueue::open(dir.join("queue.db")).await.unwrap());
    let runtime = Runtime::builder()
        .workers(1)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let (ok, failed) = run_two(&runtime).await;
    runtime.shutdown().await;
    let (expected_ok, expected_failed) = expected();
    assert_eq!(queue.result(ok).await.unwrap(), Some(expected_ok));
    assert_eq!(queue.result(failed).await.unwrap(), Some(expected_failed));
    assert_eq!(queue.result(uuid_nil()).await.unwrap(), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_keeps_each_tasks_completion() {
    let Ok(url) = std::env::var("TASKER_TEST_DATABASE_URL") else {
        eprintln!("skipped: set TASKER_TEST_DATABASE_URL to run it");
        return;
    };
    let schema = format!("tasker_completion_{}", std::process::id());
    let queue = Arc::new(
        PostgresQueue::builder(&url)
            .schema(&schema)
            .connect()
            .await
            .unwrap(),
    );
    queue.migrate().await.unwrap();
    let runtime = Runtime::builder()
        .workers(1)
        .shared_queue(queue.clone())
        .build()
        .unwrap();
    let (ok, failed) = run_two(&runtime).await;
    runtime.shutdown().await;
    let (expected_ok, expected_failed) = expected();
    let results = (
        queue.result(ok).await.unwrap(),
        queue.result(failed).await.unwrap(),
        queue.result(uuid_nil()).await.unwrap(),
    );
    let (client, driver) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(driver);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    assert_eq!(results, (Some(expected_ok), Some(expected_failed), None));
}

fn uuid_nil() -> uuid::Uuid {
    "00000000-0000-0000-0000-000000000000".parse().unwrap()
}
