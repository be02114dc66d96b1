//! The fault behind issue 10, reproduced: a panic inside a worker loop.
//! Its own test binary, because it installs a process-wide tracing
//! subscriber that injects the panic.

mod support;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use lockstep_core::workers::Worker;
use support::{settings, world, Behaviour, Scripted};

/// The fault behind issue 10: a panic raised inside a worker's own loop
/// (there, by tracing's registry, corrupted by span guards held across
/// awaits) killed the one task that ran the outbox and the timers, and
/// nothing noticed. Here a tracing layer panics the first time each loop
/// opens its tick span: the supervisor restarts both loops, commands are
/// still sent and timeouts still fire.
#[test]
fn a_panic_inside_a_worker_loop_restarts_it_and_work_goes_on() {
    use tracing_subscriber::{layer::SubscriberExt, Layer};

    struct PanicOnce {
        outbox: AtomicBool,
        timers: AtomicBool,
    }
    struct Field(Option<String>);
    impl tracing::field::Visit for Field {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            if field.name() == "worker" {
                self.0 = Some(value.to_string());
            }
        }
        fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
    }
    impl<S: tracing::Subscriber> Layer<S> for PanicOnce {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if attrs.metadata().name() != "worker_tick" {
                return;
            }
            let mut worker = Field(None);
            attrs.record(&mut worker);
            let flag = match worker.0.as_deref() {
                Some("outbox") => &self.outbox,
                Some("timers") => &self.timers,
                _ => return,
            };
            if !flag.swap(true, Ordering::SeqCst) {
                panic!("injected: a panic inside the worker loop");
            }
        }
    }
    let layer = PanicOnce {
        outbox: AtomicBool::new(false),
        timers: AtomicBool::new(false),
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    // Process-wide (this binary holds only this test), so every worker
    // thread sees it.
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let gateway = Arc::new(Scripted::new(&[(1, Behaviour::Hang)]));
        let w = world(gateway, settings(Duration::from_secs(1))).await;
        let sent = w.open(2).await;
        let times_out = w.open(1).await;
        assert_eq!(
            w.until(sent, &["sent"], Duration::from_secs(5)).await.0,
            "sent"
        );
        let (status, reason) = w
            .until(times_out, &["failed"], Duration::from_secs(5))
            .await;
        assert_eq!(
            (status.as_str(), reason.as_deref()),
            ("failed", Some("timeout"))
        );
        assert!(w.s.workers.restarts(Worker::Outbox) >= 1);
        assert!(w.s.workers.restarts(Worker::Timers) >= 1);
        w.stop().await;
    });
}
