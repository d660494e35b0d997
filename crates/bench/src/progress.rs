//! The progress bar on stderr: connections opened during setup, then the run's timeline with a
//! live rate. Drawn only when stderr is a terminal, so scripts and CI logs stay clean.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::flow::{Clock, Live};

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// The bar of one run.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar on stderr, hidden when stderr is not a terminal or when `visible` is false.
    pub fn new(visible: bool) -> Progress {
        let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Progress { bar: ProgressBar::with_draw_target(None, target) }
    }

    /// Count `total` connections being opened.
    pub fn connecting(&self, total: u64) {
        self.bar.set_style(style("{msg:12} [{bar:30}] {pos}/{len} connections"));
        self.bar.set_message("connecting");
        self.bar.set_length(total);
        self.bar.set_position(0);
    }

    /// One more connection opened.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// Replace the text in front of the bar.
    pub fn set_message(&self, text: &'static str) {
        self.bar.set_message(text);
    }

    /// Follow the run's timeline, showing deliveries and publishes per second.
    pub fn follow_flow(&self, clock: Clock, live: Arc<Live>) -> JoinHandle<()> {
        self.follow(clock, ["delivered", "published"], move || {
            [live.delivered.load(Ordering::Relaxed), live.published.load(Ordering::Relaxed)]
        })
    }

    /// Follow the run's timeline, showing how fast `counter` grows.
    pub fn follow_count(&self, clock: Clock, counter: Arc<AtomicU64>, what: &'static str) -> JoinHandle<()> {
        self.follow(clock, [what, ""], move || [counter.load(Ordering::Relaxed), 0])
    }

    /// Follow the run's timeline only.
    pub fn follow_time(&self, clock: Clock) -> JoinHandle<()> {
        self.follow(clock, ["", ""], || [0, 0])
    }

    /// Remove the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Redraw every [`TICK`] until aborted: phase, position on the timeline, and the rate of
    /// each counter that has a label.
    fn follow<F>(&self, clock: Clock, labels: [&'static str; 2], counters: F) -> JoinHandle<()>
    where
        F: Fn() -> [u64; 2] + Send + 'static,
    {
        let bar = self.bar.clone();
        bar.set_style(style("{msg:10} [{bar:30}] {elapsed:>3} {prefix}"));
        let total = clock.end.duration_since(clock.origin);
        bar.set_length(total.as_millis() as u64);
        bar.set_position(0);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(TICK);
            let mut last: Option<(Instant, [u64; 2])> = None;
            loop {
                let now = ticks.tick().await;
                let phase = if now < clock.measure_from {
                    "warm-up"
                } else if now <= clock.end {
                    "measuring"
                } else {
                    "draining"
                };
                bar.set_message(phase);
                bar.set_position(now.saturating_duration_since(clock.origin).min(total).as_millis() as u64);
                let values = counters();
                if let Some((then, before)) = last {
                    let dt = now.duration_since(then).as_secs_f64().max(1e-3);
                    let text: Vec<String> = labels
                        .iter()
                        .zip(values.iter().zip(before))
                        .filter(|(label, _)| !label.is_empty())
                        .map(|(label, (v, b))| format!("{label} {:.0}/s", v.saturating_sub(b) as f64 / dt))
                        .collect();
                    bar.set_prefix(text.join("  "));
                }
                last = Some((now, values));
            }
        })
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}
