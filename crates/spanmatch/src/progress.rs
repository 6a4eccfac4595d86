//! Progress bars on stderr for the engine's [`Progress`] reports (hidden when stderr is not a
//! terminal), and Ctrl-C as an early stop for simple matches.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use spanmatch_core::simple::SimpleProgress;
use spanmatch_engine::Progress;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// A byte-counting bar per streamed layer and a neuron-counting bar for simple matches.
pub struct Bars {
    bar: ProgressBar,
    simple: Option<ProgressBar>,
    stop: Arc<AtomicBool>,
}

impl Bars {
    /// Bars on stderr; Ctrl-C asks simple matches to stop early (they keep what was found).
    pub fn new() -> Self {
        // One flag for the process, set by the one Ctrl-C handler: every `Bars` sees it (a
        // command that reads with one `Bars` and searches with another still stops).
        static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
        let stop = STOP
            .get_or_init(|| {
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                // Fails harmlessly if another handler was registered first.
                let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
                stop
            })
            .clone();
        Self {
            bar: ProgressBar::hidden(),
            simple: None,
            stop,
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    /// The simple-match bar driven by the search's estimate of the work done (the ETA follows
    /// it; neurons finish mostly late in a search); returns false once Ctrl-C was pressed.
    pub fn simple_work(&mut self, p: SimpleProgress) -> bool {
        const STEPS: u64 = 10_000;
        let bar = self.simple.get_or_insert_with(|| {
            if !std::io::stderr().is_terminal() {
                return ProgressBar::hidden();
            }
            let b = ProgressBar::new(STEPS);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {percent}% of the work, {msg} (Ctrl-C stops and keeps what was found)",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix("simple");
            b
        });
        let work = p.work.clamp(0.0, 1.0);
        bar.set_position((work * STEPS as f64) as u64);
        // The ETA from the average rate since the start (the search's progress comes in
        // bursts, which make a recent-rate estimate jump).
        let elapsed = bar.elapsed().as_secs_f64();
        let eta = if work > 0.005 {
            let left = (elapsed * (1.0 - work) / work).round() as u64;
            format!("ETA {}:{:02}:{:02}", left / 3600, left / 60 % 60, left % 60)
        } else {
            "ETA unknown yet".to_string()
        };
        bar.set_message(format!(
            "{}/{} neurons done, {eta}",
            p.neurons_done, p.neurons_total
        ));
        if p.neurons_done >= p.neurons_total {
            bar.finish_and_clear();
            self.simple = None;
        }
        !self.stop.load(Ordering::SeqCst)
    }
}

/// A progress bar on stderr counting bytes, hidden when stderr is not a terminal.
pub fn byte_bar(label: &str, total_bytes: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}

impl Progress for Bars {
    fn start(&mut self, label: &str, total: u64) {
        self.bar.finish_and_clear();
        self.bar = byte_bar(label, total);
    }

    fn inc(&mut self, n: u64) {
        self.bar.inc(n);
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }

    fn simple(&mut self, done: usize, total: usize) -> bool {
        let bar = self.simple.get_or_insert_with(|| {
            if !std::io::stderr().is_terminal() {
                return ProgressBar::hidden();
            }
            let b = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} neurons, ETA {eta} (Ctrl-C stops and keeps what was found)",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix("simple");
            b
        });
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if done >= total {
            bar.finish_and_clear();
            self.simple = None;
        }
        !self.stop.load(Ordering::SeqCst)
    }

    fn warn(&mut self, message: &str) {
        self.bar.suspend(|| eprintln!("warning: {message}"));
    }
}
