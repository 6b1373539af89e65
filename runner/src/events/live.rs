//! Live progress at the bottom of a terminal.
//!
//! While stderr is a terminal, the CLI keeps a few live lines under the
//! usual timestamped lines: one per long step in progress (an image build,
//! a boot, a script step such as a wait, a coverage pull, the merge, the
//! report writing) with a spinner and the step's elapsed time. Every write
//! goes through one [`Live`] area: it erases the live lines, prints the new
//! lines in their place, then draws the live lines again under them, all
//! in one write under one lock, so lines never tear. Once a step ends its
//! live line is gone and the step's usual line (if it has one) is above.
//!
//! Erased, the terminal holds exactly the lines the plain reporter prints.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::RunEvent;
use crate::machine::MachineEvent;

/// How often live lines are redrawn while no event arrives.
pub const TICK: Duration = Duration::from_millis(100);

/// The spinner's frames, one per [`TICK`].
pub const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Most live lines at once, whatever the terminal's height.
const MAX_LINES: usize = 8;

/// Columns assumed when the terminal does not say.
const DEFAULT_COLUMNS: u16 = 80;

/// The terminal's size as (rows, columns), when known.
type SizeFn = Box<dyn Fn() -> Option<(u16, u16)> + Send>;

/// The live area of one terminal, shared by every reporter writing to it
/// (the run's, or in a suite each spec's and the suite's own).
#[derive(Clone)]
pub struct Live {
    area: Arc<Mutex<Area>>,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

/// What one step in progress is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Image(String),
    Boot(String),
    Step(Option<String>, String),
    Subtest(String),
    Collect(String),
    Merge,
    Report,
}

impl Key {
    /// Whether the step belongs to the test script (ended with it).
    fn in_script(&self) -> bool {
        matches!(self, Key::Step(..) | Key::Subtest(_))
    }
}

/// A step in progress.
#[derive(Debug)]
struct Step {
    key: Key,
    label: String,
    since: Instant,
}

/// One writer of the area: its line prefix, its steps in progress and the
/// part of a line it wrote without its end yet.
#[derive(Debug)]
struct Slot {
    id: u64,
    prefix: String,
    compact: bool,
    steps: Vec<Step>,
    pending: Vec<u8>,
}

struct Area {
    out: Box<dyn Write + Send>,
    size: SizeFn,
    epoch: Instant,
    slots: Vec<Slot>,
    next_id: u64,
    /// Live lines on the screen now; the cursor is at the end of the last.
    drawn: usize,
    /// The live lines on the screen now.
    shown: Vec<String>,
    last_draw: Option<Instant>,
    /// Live [`Hold`]s: while there are some, nothing is drawn.
    holds: usize,
}

impl Live {
    /// A live area writing to `out`, a terminal whose size `size` tells.
    pub fn new(
        out: impl Write + Send + 'static,
        size: impl Fn() -> Option<(u16, u16)> + Send + 'static,
    ) -> Live {
        Live {
            area: Arc::new(Mutex::new(Area {
                out: Box::new(out),
                size: Box::new(size),
                epoch: Instant::now(),
                slots: Vec::new(),
                next_id: 0,
                drawn: 0,
                shown: Vec::new(),
                last_draw: None,
                holds: 0,
            })),
        }
    }

    /// Prints `line` above the live lines (for messages from outside the
    /// event stream, such as a signal's arrival).
    pub fn println(&self, line: &str) -> io::Result<()> {
        let slot = self.slot("", false);
        let mut out = slot.clone();
        writeln!(out, "{line}")?;
        out.flush()
    }

    /// Erases the live lines and draws none until the returned hold is
    /// dropped: for output that does not go through the area (a banner on
    /// stdout, which shares the terminal).
    pub fn hold(&self) -> Hold {
        let mut area = lock(&self.area);
        area.holds += 1;
        let _ = area.refresh(None);
        Hold {
            area: Arc::clone(&self.area),
        }
    }

    /// A new writer of this area whose lines (printed and live) start with
    /// `prefix`; a `compact` one shows its steps on one live line (suites,
    /// one line per running spec), otherwise each step gets its own.
    pub fn slot(&self, prefix: &str, compact: bool) -> LiveSlot {
        let mut area = lock(&self.area);
        let id = area.next_id;
        area.next_id += 1;
        area.slots.push(Slot {
            id,
            prefix: prefix.to_owned(),
            compact,
            steps: Vec::new(),
            pending: Vec::new(),
        });
        LiveSlot {
            shared: Arc::new(SlotShared {
                area: Arc::clone(&self.area),
                id,
            }),
        }
    }
}

/// Keeps a [`Live`] area from drawing while it lives.
pub struct Hold {
    area: Arc<Mutex<Area>>,
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold").finish_non_exhaustive()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut area = lock(&self.area);
        area.holds = area.holds.saturating_sub(1);
        let _ = area.refresh(None);
    }
}

/// One writer of a [`Live`] area; write whole lines to it, tell it the
/// run's events with [`LiveSlot::track`]. Lines are printed on flush.
/// When its last clone is dropped its live lines are erased.
#[derive(Clone)]
pub struct LiveSlot {
    shared: Arc<SlotShared>,
}

impl fmt::Debug for LiveSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveSlot")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

struct SlotShared {
    area: Arc<Mutex<Area>>,
    id: u64,
}

impl Drop for SlotShared {
    fn drop(&mut self) {
        let mut area = lock(&self.area);
        if let Some(slot) = area.slot(self.id) {
            // A last line without its end is printed whole.
            if !slot.pending.is_empty() && !slot.pending.ends_with(b"\n") {
                slot.pending.push(b'\n');
            }
            slot.steps.clear();
        }
        let _ = area.refresh(Some(self.id));
        area.slots.retain(|s| s.id != self.id);
    }
}

impl LiveSlot {
    /// Redraws the live lines (their elapsed times and spinners) unless
    /// they were drawn less than a tick ago or there are none.
    pub fn tick(&self) -> io::Result<()> {
        let mut area = lock(&self.shared.area);
        let busy = area.slots.iter().any(|s| !s.steps.is_empty());
        let recent = area
            .last_draw
            .is_some_and(|t| t.elapsed() < TICK.mul_f32(0.75));
        if !busy || recent {
            return Ok(());
        }
        area.refresh(None)
    }

    /// Updates the steps in progress after `event` (drawn on the next
    /// flush or tick).
    pub fn track(&self, event: &RunEvent) {
        let mut area = lock(&self.shared.area);
        let Some(slot) = area.slot(self.shared.id) else {
            return;
        };
        match change(event) {
            Change::Start(key, label) => slot.steps.push(Step {
                key,
                label,
                since: Instant::now(),
            }),
            Change::End(key) => {
                if let Some(i) = slot.steps.iter().position(|s| s.key == key) {
                    slot.steps.remove(i);
                }
            }
            Change::EndScript => slot.steps.retain(|s| !s.key.in_script()),
            Change::EndAll => slot.steps.clear(),
            Change::Nothing => {}
        }
    }
}

impl Write for LiveSlot {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut area = lock(&self.shared.area);
        if let Some(slot) = area.slot(self.shared.id) {
            slot.pending.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        lock(&self.shared.area).refresh(Some(self.shared.id))
    }
}

fn lock(area: &Mutex<Area>) -> MutexGuard<'_, Area> {
    area.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Area {
    fn slot(&mut self, id: u64) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id)
    }

    /// Erases the live lines, prints the whole lines `id` has pending
    /// (each with its prefix), draws the live lines again: one write.
    fn refresh(&mut self, id: Option<u64>) -> io::Result<()> {
        let lines = if self.holds > 0 {
            Vec::new()
        } else {
            self.live_lines()
        };
        let printing = id
            .and_then(|id| self.slots.iter().find(|s| s.id == id))
            .is_some_and(|s| s.pending.contains(&b'\n'));
        if !printing && lines == self.shown {
            return Ok(());
        }
        let mut buf = Vec::new();
        if self.drawn > 0 {
            buf.push(b'\r');
            if self.drawn > 1 {
                buf.extend_from_slice(format!("\x1b[{}A", self.drawn - 1).as_bytes());
            }
            buf.extend_from_slice(b"\x1b[J");
            self.drawn = 0;
        }
        if let Some(slot) = id.and_then(|id| self.slots.iter_mut().find(|s| s.id == id)) {
            let whole = slot.pending.iter().rposition(|&b| b == b'\n');
            if let Some(end) = whole {
                for line in slot
                    .pending
                    .drain(..=end)
                    .as_slice()
                    .split_inclusive(|&b| b == b'\n')
                {
                    buf.extend_from_slice(slot.prefix.as_bytes());
                    buf.extend_from_slice(line);
                }
            }
        }
        if !lines.is_empty() {
            buf.extend_from_slice(lines.join("\n").as_bytes());
            self.drawn = lines.len();
            self.last_draw = Some(Instant::now());
        }
        self.shown = lines;
        if buf.is_empty() {
            return Ok(());
        }
        self.out.write_all(&buf)?;
        self.out.flush()
    }

    /// The live lines for the steps in progress now, each cut to the
    /// terminal's width (a wrapped line would break the erasing).
    fn live_lines(&self) -> Vec<String> {
        let (rows, cols) = (self.size)().unwrap_or((0, DEFAULT_COLUMNS));
        let width = usize::from(cols).saturating_sub(1).max(10);
        let most = if rows == 0 {
            MAX_LINES
        } else {
            usize::from(rows).saturating_sub(2).clamp(1, MAX_LINES)
        };
        let frame = (self.epoch.elapsed().as_millis() / TICK.as_millis()) as usize;
        let spinner = SPINNER.get(frame % SPINNER.len()).copied().unwrap_or('-');
        let mut lines = Vec::new();
        for slot in &self.slots {
            let line = |step: &Step, more: usize| {
                let mut text = format!(
                    "{}{spinner} {} {}",
                    slot.prefix,
                    elapsed(step.since.elapsed()),
                    step.label
                );
                if more > 0 {
                    text.push_str(&format!(" (+{more} more)"));
                }
                fit(&text, width)
            };
            if slot.compact {
                if let Some(last) = slot.steps.last() {
                    lines.push(line(last, slot.steps.len() - 1));
                }
            } else {
                lines.extend(slot.steps.iter().map(|s| line(s, 0)));
            }
        }
        if lines.len() > most {
            let hidden = lines.len() - (most - 1);
            lines.truncate(most - 1);
            lines.push(fit(&format!("… and {hidden} more step(s)"), width));
        }
        lines
    }
}

/// How a run event changes the steps in progress.
enum Change {
    Start(Key, String),
    End(Key),
    /// The script ended: so did its steps and subtests.
    EndScript,
    EndAll,
    Nothing,
}

fn change(event: &RunEvent) -> Change {
    match event {
        RunEvent::ImageStart { machine } => Change::Start(
            Key::Image(machine.clone()),
            format!("{machine}: building image"),
        ),
        RunEvent::ImageEnd { machine, .. } => Change::End(Key::Image(machine.clone())),
        RunEvent::Machine(MachineEvent::Booting { machine, .. }) => {
            Change::Start(Key::Boot(machine.clone()), format!("{machine}: booting"))
        }
        RunEvent::Machine(
            MachineEvent::Ready { machine, .. }
            | MachineEvent::BootFailed { machine, .. }
            | MachineEvent::Stopped { machine, .. },
        ) => Change::End(Key::Boot(machine.clone())),
        RunEvent::StepStart { machine, what } => Change::Start(
            Key::Step(machine.clone(), what.clone()),
            format!("{}: {what}", machine.as_deref().unwrap_or("script")),
        ),
        RunEvent::StepEnd { machine, what, .. } => {
            Change::End(Key::Step(machine.clone(), what.clone()))
        }
        RunEvent::SubtestStart { name } => {
            Change::Start(Key::Subtest(name.clone()), format!("subtest `{name}`"))
        }
        RunEvent::SubtestEnd { name, .. } => Change::End(Key::Subtest(name.clone())),
        RunEvent::ScriptEnd { .. } => Change::EndScript,
        RunEvent::CollectStart { capture, .. } => Change::Start(
            Key::Collect(capture.clone()),
            format!("{capture}: pulling coverage"),
        ),
        RunEvent::CollectEnd { capture, .. } => Change::End(Key::Collect(capture.clone())),
        RunEvent::MergeStart { captures } => Change::Start(
            Key::Merge,
            format!("coverage: merging {captures} capture(s)"),
        ),
        RunEvent::MergeEnd { .. } => Change::End(Key::Merge),
        RunEvent::ReportStart => Change::Start(Key::Report, "coverage: writing reports".into()),
        RunEvent::ReportWritten { .. } => Change::End(Key::Report),
        RunEvent::RunEnd { .. } => Change::EndAll,
        _ => Change::Nothing,
    }
}

/// An elapsed time as a live line shows it: `4.2s`, `12m05s`.
fn elapsed(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// `text` on one line of at most `width` characters: control characters
/// (a command's newlines) become spaces, a longer text ends in `…`.
fn fit(text: &str, width: usize) -> String {
    let clean = text.chars().map(|c| if c.is_control() { ' ' } else { c });
    if text.chars().count() <= width {
        return clean.collect();
    }
    let mut cut: String = clean.take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_times_read_as_seconds_then_minutes() {
        assert_eq!(elapsed(Duration::from_millis(40)), "0.0s");
        assert_eq!(elapsed(Duration::from_millis(4_260)), "4.3s");
        assert_eq!(elapsed(Duration::from_secs(725)), "12m05s");
    }

    #[test]
    fn live_text_fits_one_line() {
        assert_eq!(fit("a: succeed(`x\ny`)", 40), "a: succeed(`x y`)");
        assert_eq!(fit("abcdefghijkl", 6), "abcde…");
        assert_eq!(fit("abcdef", 6), "abcdef");
    }
}
