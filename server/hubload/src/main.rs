//! `hubload`: the flags and the phases of one run against a Pusher
//! server (Lockstep's hub, sockudo, soketi…): connect N WebSockets,
//! subscribe them over C public channels, stay idle for the warm-up,
//! publish at a fixed rate over the signed HTTP API, drain, report.
//!
//! ```text
//! hubload --port 3000 --app-id 1 --key K --secret S \
//!         --connections 10000 --channels 100 --rate 200 --duration-secs 20 \
//!         --server-pid "$(pgrep -n lockstep)"
//! ```
//! The last line printed is `RESULT {json}` (see `stats::Report`).

mod client;
mod publish;
mod rss;
mod stats;

use std::{
    process::ExitCode,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::Duration,
};

use clap::Parser;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use client::{Phase, Shared};
use publish::Publisher;
use stats::Report;

/// Pusher-protocol load: WebSocket subscribers plus signed HTTP publishes
/// against any Pusher server; prints connect rate, delivery, latency and
/// the server's memory, then `RESULT {json}`.
#[derive(Debug, Parser)]
#[command(name = "hubload", version)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    app_id: String,
    #[arg(long)]
    key: String,
    #[arg(long)]
    secret: String,
    /// WebSocket connections; connection i subscribes to `load-{i % C}`.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Public channels (C).
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// Events published per second, each to one channel, round robin; 0:
    /// none (an idle run, for memory).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Size of each event's `data` (a JSON string: send time, number, padding).
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Length of the publish (or idle) phase.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Idle time between the last subscription and the first publish.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Time after the last publish answered for deliveries to arrive.
    #[arg(long, default_value_t = 2)]
    drain_secs: u64,
    /// The server's process id: its RSS is read before connecting, when
    /// idle, and at the end.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Publish through `/batch_events`, ten events a request.
    #[arg(long)]
    batch: bool,
    /// Connects (and subscribes) in flight at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// HTTP publish requests in flight at most.
    #[arg(long, default_value_t = 16)]
    publish_workers: usize,
    /// A name for this run, copied into the RESULT line.
    #[arg(long)]
    label: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(report) => {
            report.print();
            match serde_json::to_string(&report) {
                Ok(json) => println!("RESULT {json}"),
                Err(e) => eprintln!("hubload: the RESULT line: {e}"),
            }
            match &report.aborted {
                Some(why) => {
                    eprintln!("hubload: {why}");
                    ExitCode::FAILURE
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("hubload: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<Report, String> {
    if args.connections == 0 || args.channels == 0 {
        return Err("--connections and --channels must be at least 1".to_string());
    }
    if !args.rate.is_finite() || args.rate < 0.0 {
        return Err("--rate must be a number ≥ 0".to_string());
    }
    let mut report = Report {
        label: args.label.clone(),
        target: format!("{}:{}", args.host, args.port),
        connections: args.connections,
        channels: args.channels,
        rate: args.rate,
        batch: args.batch,
        payload_bytes: args.payload_bytes,
        duration_secs: args.duration_secs,
        server_pid: args.server_pid,
        ..Report::default()
    };
    report.rss_before_kib = match args.server_pid {
        Some(pid) => Some(rss::of_pid(pid).map_err(|e| format!("--server-pid {pid}: {e}"))?),
        None => None,
    };
    let url = format!(
        "ws://{}:{}/app/{}?protocol=7&client=hubload&version={}",
        args.host,
        args.port,
        args.key,
        env!("CARGO_PKG_VERSION")
    );
    let hub = Arc::new(Shared::new(url, args.channels, args.connect_concurrency));
    let publisher = Arc::new(Publisher::new(publish::Settings {
        host: &args.host,
        port: args.port,
        app_id: &args.app_id,
        key: &args.key,
        secret: &args.secret,
        channels: hub.channels.clone(),
        batch: args.batch,
        payload_bytes: args.payload_bytes,
        workers: args.publish_workers,
    })?);

    // Connect.
    let (phase, phase_rx) = watch::channel(Phase::Connect);
    let (steps_tx, mut steps) = mpsc::unbounded_channel();
    let started = Instant::now();
    for id in 0..args.connections {
        tokio::spawn(client::run(
            id,
            hub.clone(),
            phase_rx.clone(),
            steps_tx.clone(),
        ));
    }
    drop(steps_tx);
    drop(phase_rx);
    let (connected, failed) = gather(&mut steps, args.connections, "connected").await;
    report.connected = connected;
    report.connect_failed = failed;
    report.connect_secs = started.elapsed().as_secs_f64();
    report.connect_rate = connected as f64 / report.connect_secs.max(1e-9);
    let times = hub.connect_time.summary();
    report.connect_p50_ms = times.quantile_ms(0.5);
    report.connect_p99_ms = times.quantile_ms(0.99);
    eprintln!(
        "hubload: {connected} connected, {failed} failed in {:.2} s ({:.0}/s)",
        report.connect_secs, report.connect_rate
    );
    if connected == 0 {
        report.errors = hub.errors.snapshot();
        report.tool_rss_kib = rss::own();
        report.aborted = Some(format!(
            "no connection to {} could be opened (see the errors above)",
            hub.url
        ));
        return Ok(report);
    }

    // Subscribe.
    let started = Instant::now();
    // Every connection task holds a receiver until it is subscribed.
    let _ = phase.send(Phase::Subscribe);
    let (subscribed, failed) = gather(&mut steps, connected, "subscribed").await;
    report.subscribed = subscribed;
    report.subscribe_failed = failed;
    report.subscribe_secs = started.elapsed().as_secs_f64();
    let times = hub.subscribe_time.summary();
    report.subscribe_p50_ms = times.quantile_ms(0.5);
    report.subscribe_p99_ms = times.quantile_ms(0.99);
    eprintln!(
        "hubload: {subscribed} subscribed, {failed} failed in {:.2} s",
        report.subscribe_secs
    );

    // Idle.
    tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;
    report.rss_idle_kib = server_rss(args.server_pid, "idle");
    if let (Some(before), Some(idle)) = (report.rss_before_kib, report.rss_idle_kib) {
        if subscribed > 0 {
            report.rss_per_conn_kib = Some((idle as f64 - before as f64) / subscribed as f64);
        }
    }

    // Publish (or stay idle).
    let subscribers = hub.subscriber_counts();
    report.open_at_start = subscribers.iter().sum();
    let duration = Duration::from_secs(args.duration_secs);
    let delivered_before = hub.deliveries.delivered();
    let started = Instant::now();
    if args.rate > 0.0 {
        eprintln!(
            "hubload: publishing {} events/s for {} s",
            args.rate, args.duration_secs
        );
        let schedule =
            publish::run(publisher.clone(), args.rate, duration, args.publish_workers).await;
        report.publishes_due = schedule.due;
        if schedule.queued < schedule.due {
            eprintln!(
                "hubload: the publisher fell behind: {} of {} events sent ({:.1} s late)",
                schedule.queued,
                schedule.due,
                schedule.lagged.as_secs_f64()
            );
        }
    } else {
        tokio::time::sleep(duration).await;
    }
    report.publish_secs = started.elapsed().as_secs_f64();
    let delivered_in_phase = hub.deliveries.delivered().saturating_sub(delivered_before);
    report.delivered_per_sec = delivered_in_phase as f64 / report.publish_secs.max(1e-9);

    // Drain, then read everything out.
    tokio::time::sleep(Duration::from_secs(args.drain_secs)).await;
    report.delivered = hub.deliveries.delivered();
    report.rss_end_kib = server_rss(args.server_pid, "end");
    report.tool_rss_kib = rss::own();
    report.open_at_end = hub.open.load(Relaxed);

    let counts = &publisher.counts;
    report.publishes_attempted = counts.events_attempted.load(Relaxed);
    report.publishes_ok = counts.events_ok.load(Relaxed);
    report.publishes_failed = counts.events_failed.load(Relaxed);
    report.http_requests = counts.requests.load(Relaxed);
    let http = counts.request_time.summary();
    report.http_p50_ms = http.quantile_ms(0.5);
    report.http_p99_ms = http.quantile_ms(0.99);

    report.expected = publisher
        .per_channel_ok()
        .iter()
        .zip(&subscribers)
        .map(|(published, subs)| published * subs)
        .sum();
    report.lost = report.expected.saturating_sub(report.delivered);
    report.unexpected = report.delivered.saturating_sub(report.expected);
    let latency = hub.deliveries.latency();
    report.latency_p50_ms = latency.quantile_ms(0.5);
    report.latency_p99_ms = latency.quantile_ms(0.99);
    report.latency_max_ms = latency.max_ms();
    report.out_of_order = hub.deliveries.out_of_order();
    report.bad_frames = hub.deliveries.bad_frames();

    let mut errors = hub.errors.snapshot();
    for (what, count) in counts.errors.snapshot() {
        *errors.entry(what).or_insert(0) += count;
    }
    report.errors = errors;
    // Keep the connections (and the phase sender they no longer need)
    // open until everything has been read.
    drop(phase);
    Ok(report)
}

/// Counts `want` outcomes (true: ok) from the connection tasks, printing
/// progress every two seconds.
async fn gather(
    steps: &mut mpsc::UnboundedReceiver<bool>,
    want: usize,
    what: &str,
) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    let mut shown = Instant::now();
    while ok + failed < want {
        match tokio::time::timeout(Duration::from_secs(2), steps.recv()).await {
            Ok(Some(true)) => ok += 1,
            Ok(Some(false)) => failed += 1,
            // Every task has ended without reporting (cannot happen
            // unless one panicked).
            Ok(None) => break,
            Err(_) => {}
        }
        if shown.elapsed() >= Duration::from_secs(2) {
            eprintln!("hubload: {ok} {what}, {failed} failed, of {want}");
            shown = Instant::now();
        }
    }
    (ok, failed)
}

fn server_rss(pid: Option<u32>, when: &str) -> Option<u64> {
    let pid = pid?;
    match rss::of_pid(pid) {
        Ok(kib) => Some(kib),
        Err(e) => {
            eprintln!("hubload: server RSS ({when}): {e}");
            None
        }
    }
}
