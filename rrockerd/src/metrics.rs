//! Prometheus metrics (prometheus-client), and the plain-HTTP listener of their own that
//! serves them at `/metrics` when `--metrics-listen` asks for one: tasks by state, starts,
//! start failures, stops and OOM kills, the start latency, bytes streamed, streams open and
//! the engine's io_uring submissions; and per identity with running tasks, what its quotas
//! count (its tasks, the sums of their memory, pids and CPU limits). Counts only: never a
//! task's id, argv or output, and an identity only as the label of its quota use.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::policy::Figures;
use crate::quota::Quota;
use crate::startup_error::StartupError;
use crate::state::{KillReason, TaskState};

/// The `state` label of the tasks gauge.
type StateLabel = [(&'static str, &'static str); 1];

/// Every metric of the daemon, updated where things happen and encoded on each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tasks: Family<StateLabel, Gauge>,
    starts: Counter,
    start_failures: Counter,
    stops: Counter,
    oom_kills: Counter,
    start_seconds: Histogram,
    streamed_bytes: Counter,
    streams: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `rrocker` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rrocker");
        let tasks = Family::<StateLabel, Gauge>::default();
        registry.register("tasks", "Tasks the daemon holds, by state", tasks.clone());
        let starts = Counter::default();
        registry.register("task_starts", "Tasks started", starts.clone());
        let start_failures = Counter::default();
        let failures_help = "Start requests refused or failed (bad input, caps, set-up errors)";
        registry.register("task_start_failures", failures_help, start_failures.clone());
        let stops = Counter::default();
        registry.register("task_stops", "Stop requests that stopped a task", stops.clone());
        let oom_kills = Counter::default();
        let oom_help = "Tasks the kernel's OOM killer ended";
        registry.register("task_oom_kills", oom_help, oom_kills.clone());
        // 0.5 ms to about 4 s.
        let start_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let latency_help = "Time from a start request to its command running, in seconds";
        registry.register("task_start_seconds", latency_help, start_seconds.clone());
        let streamed_bytes = Counter::default();
        let bytes_help = "Bytes of task output sent to stream clients";
        registry.register("streamed_bytes", bytes_help, streamed_bytes.clone());
        let streams = Gauge::default();
        registry.register("streams_active", "Output streams open now", streams.clone());
        registry.register_collector(Box::new(UringSubmissions));
        for state in ["running", "completed", "killed", "failed"] {
            // Every state shows, at 0 until a task reaches it.
            let _ = tasks.get_or_create(&[("state", state)]);
        }
        Self {
            registry,
            tasks,
            starts,
            start_failures,
            stops,
            oom_kills,
            start_seconds,
            streamed_bytes,
            streams,
        }
    }

    /// Also serves each identity's use of `quota`.
    pub fn with_quota(mut self, quota: Arc<Quota>) -> Self {
        self.registry.register_collector(Box::new(QuotaUse(quota)));
        self
    }

    /// A task started; its start took `took`.
    pub fn started(&self, took: Duration) {
        self.starts.inc();
        self.start_seconds.observe(took.as_secs_f64());
        self.tasks.get_or_create(&[("state", "running")]).inc();
    }

    /// A start request did not start a task.
    pub fn start_failed(&self) {
        self.start_failures.inc();
    }

    /// A stop request stopped a task.
    pub fn stopped(&self) {
        self.stops.inc();
    }

    /// A task ended in `state`.
    pub fn ended(&self, state: &TaskState) {
        self.tasks.get_or_create(&[("state", "running")]).dec();
        self.tasks.get_or_create(&[("state", state_label(state))]).inc();
        if matches!(state, TaskState::Killed { reason: KillReason::OutOfMemory, .. }) {
            self.oom_kills.inc();
        }
    }

    /// A task that had ended in `state` was removed.
    pub fn removed(&self, state: &TaskState) {
        self.tasks.get_or_create(&[("state", state_label(state))]).dec();
    }

    /// A stream opened; it counts as open until the guard is dropped.
    pub fn stream_opened(self: &Arc<Self>) -> OpenStream {
        self.streams.inc();
        OpenStream(Arc::clone(self))
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// An open output stream, counted in `rrocker_streams_active` while it lives.
#[derive(Debug)]
pub struct OpenStream(Arc<Metrics>);

impl OpenStream {
    /// `bytes` of output went to this stream's client.
    pub fn streamed(&self, bytes: usize) {
        self.0.streamed_bytes.inc_by(bytes as u64);
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.streams.dec();
    }
}

fn state_label(state: &TaskState) -> &'static str {
    match state {
        TaskState::Running => "running",
        TaskState::Completed { .. } => "completed",
        TaskState::Killed { .. } => "killed",
        TaskState::Failed { .. } => "failed",
    }
}

/// The engine's io_uring submissions, read at each scrape.
#[derive(Debug)]
struct UringSubmissions;

impl Collector for UringSubmissions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(rrocker_uring::uring_submissions());
        let help = "io_uring submissions of the task engine (pipe reads, spill writes, closes)";
        let metric =
            encoder.encode_descriptor("uring_submissions", help, None, counter.metric_type())?;
        counter.encode(metric)
    }
}

/// One figure of an identity's use: from its running tasks and their limits' sums.
type UseFigure = fn(usize, Figures) -> f64;

/// Each identity's quota use, read from the [`Quota`] at each scrape.
#[derive(Debug)]
struct QuotaUse(Arc<Quota>);

impl Collector for QuotaUse {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let usage = self.0.usage();
        #[expect(clippy::cast_precision_loss, reason = "a gauge of thousandths of a CPU")]
        let figures: [(&str, &str, UseFigure); 4] = [
            ("identity_tasks", "Running tasks of an identity", |tasks, _| tasks as f64),
            (
                "identity_memory_limit_bytes",
                "Sum of an identity's running tasks' memory limits",
                |_, f| f.memory as f64,
            ),
            ("identity_pids_limit", "Sum of an identity's running tasks' pids limits", |_, f| {
                f.pids as f64
            }),
            (
                "identity_cpu_limit",
                "Sum of an identity's running tasks' CPU limits, in CPUs",
                |_, f| f.cpu_millis as f64 / 1000.0,
            ),
        ];
        for (name, help, value) in figures {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (identity, tasks, limits) in &usage {
                let labels = [("identity", identity.as_str())];
                let gauge = ConstGauge::new(value(*tasks, *limits));
                gauge.encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// How long a scraper may take to send its request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` and serves the metrics there until the returned sender is dropped; returns
/// the bound address too (port 0 picks one).
pub async fn listen(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<(SocketAddr, oneshot::Sender<()>), StartupError> {
    let listen_error = |source| StartupError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(serve(listener, metrics, async {
        let _ = stopped.await;
    }));
    Ok((bound, stop))
}

/// Serves `GET /metrics` over plain HTTP/1.1 on `listener` until `shutdown` resolves.
async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let metrics = Arc::clone(&metrics);
        let service = hyper::service::service_fn(move |request| {
            let answer = respond(&metrics, &request);
            async move { Ok::<_, Infallible>(answer) }
        });
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            // A client that never finishes its request does not hold a connection forever.
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let _ = http.serve_connection(io, service).await;
        });
    }
}

fn respond<B>(metrics: &Metrics, request: &Request<B>) -> Response<Full<Bytes>> {
    let answer = |status, content_type, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => answer(StatusCode::OK, OPENMETRICS, metrics.encode()),
        (_, "/metrics") => {
            answer(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET /metrics\n".into())
        }
        _ => answer(StatusCode::NOT_FOUND, "text/plain", "metrics are at /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_moves_between_states_and_an_oom_kill_counts() {
        let metrics = Metrics::new();
        metrics.started(Duration::from_millis(3));
        metrics.started(Duration::from_millis(5));
        let oom =
            TaskState::Killed { reason: KillReason::OutOfMemory, signal: Some(9), exit_code: None };
        metrics.ended(&oom);
        let text = metrics.encode();
        for line in [
            "rrocker_tasks{state=\"running\"} 1\n",
            "rrocker_tasks{state=\"killed\"} 1\n",
            "rrocker_tasks{state=\"completed\"} 0\n",
            "rrocker_task_starts_total 2\n",
            "rrocker_task_oom_kills_total 1\n",
            "rrocker_task_start_seconds_count 2\n",
            "# TYPE rrocker_uring_submissions counter\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        metrics.removed(&oom);
        assert!(metrics.encode().contains("rrocker_tasks{state=\"killed\"} 0\n"));
    }
}
