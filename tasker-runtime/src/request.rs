//! A request to run a registered task by name.

use serde::Serialize;
use serde_json::Value;
use tasker_telemetry::propagation::{self, TraceContext};

/// Why a [`TaskRequest`] could not be made.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The context does not serialize to JSON.
    #[error("the context of the request for task `{name}` does not serialize to JSON: {source}")]
    Context {
        /// The task requested.
        name: String,
        /// serde's error.
        source: serde_json::Error,
    },
}

tasker_telemetry::__debug_shows_message!(RequestError { Context });

/// A request to run the task registered as `name`, with a JSON context that deserializes into
/// its input.
///
/// ```
/// use tasker::TaskRequest;
/// let request = TaskRequest::new("order_fulfillment", &serde_json::json!({"id": 7}))?
///     .version("1.0.0")
///     .bypass_steps(["gift_wrap"]);
/// assert_eq!(request.name(), "order_fulfillment");
/// # Ok::<(), tasker::RequestError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    name: String,
    version: Option<String>,
    context: Value,
    bypass_steps: Vec<String>,
    trace_context: Option<TraceContext>,
}

impl TaskRequest {
    /// A request for the latest registered version of `name`, carrying the trace context of the
    /// code that makes it.
    pub fn new(name: impl Into<String>, context: &impl Serialize) -> Result<Self, RequestError> {
        let name = name.into();
        let context = serde_json::to_value(context).map_err(|source| RequestError::Context {
            name: name.clone(),
            source,
        })?;
        Ok(Self {
            name,
            version: None,
            context,
            bypass_steps: Vec::new(),
            trace_context: propagation::inject(None),
        })
    }

    /// Asks for this exact version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Bypasses these steps: each must be a `skippable` step; when the task calls it, it emits
    /// `step.skip` with reason `bypassed` and returns without running.
    pub fn bypass_steps<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.bypass_steps.extend(steps.into_iter().map(Into::into));
        self
    }

    /// Replaces the trace context to continue (by default, the one of the code making the
    /// request, when a propagator such as the OpenTelemetry adapter is installed).
    pub fn trace_context(mut self, trace_context: Option<TraceContext>) -> Self {
        self.trace_context = trace_context;
        self
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version asked for, if any.
    pub fn requested_version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The context.
    pub fn context(&self) -> &Value {
        &self.context
    }

    /// The steps to bypass.
    pub fn bypassed_steps(&self) -> &[String] {
        &self.bypass_steps
    }

    /// The trace context to continue.
    pub fn carried_trace_context(&self) -> Option<&TraceContext> {
        self.trace_context.as_ref()
    }
}
