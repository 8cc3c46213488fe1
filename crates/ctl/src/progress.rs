//! Live progress bars on stderr for long requests; hidden for `--json` and when stderr
//! is not a terminal.

use drd_proto::{Event, ProgressUnit};
use indicatif::{ProgressBar, ProgressStyle};

/// A bar that follows the request's progress events.
pub struct Bar {
    bar: ProgressBar,
    unit: Option<ProgressUnit>,
}

impl Bar {
    /// A new bar, hidden when `json` is set.
    pub fn new(json: bool) -> Bar {
        Bar {
            bar: if json {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(0)
            },
            unit: None,
        }
    }

    /// Shows one event.
    pub fn show(&mut self, event: &Event) {
        // Shutdown steps are printed as lines by the shutdown command, not as a bar.
        let Event::Progress(progress) = event else {
            return;
        };
        if self.unit != Some(progress.unit)
            || (self.bar.length() == Some(0) && progress.total.is_some())
        {
            self.unit = Some(progress.unit);
            self.bar
                .set_style(style(progress.unit, progress.total.is_some()));
        }
        match progress.total {
            Some(total) => self.bar.set_length(total.max(progress.done)),
            None => self.bar.unset_length(),
        }
        self.bar.set_position(progress.done);
        self.bar.set_prefix(progress.task.clone());
        self.bar.set_message(progress.detail.clone());
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn style(unit: ProgressUnit, known_total: bool) -> ProgressStyle {
    let template = match (unit, known_total) {
        (ProgressUnit::Bytes, true) => {
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}"
        }
        (ProgressUnit::Bytes, false) => "{prefix} {spinner} {bytes} {bytes_per_sec} {wide_msg}",
        (ProgressUnit::Items, true) => "{prefix} [{bar:30}] {pos}/{len} eta {eta} {wide_msg}",
        (ProgressUnit::Items, false) => "{prefix} {spinner} {pos} {wide_msg}",
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}
