//! The live view's state, apart from drawing it: how the destinations are
//! sorted, what the filter keeps, whether it is paused or shows its help,
//! and what each key does. No terminal here: the keys arrive as [`Key`]s,
//! so every binding is unit-tested.

use crate::report::Report;

/// A key, as the view understands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Esc,
    Backspace,
    /// Ctrl-C: quits, even while typing a filter.
    Interrupt,
}

/// What the destinations table is sorted by, most first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Share of the ports held (the default: exhaustion first).
    #[default]
    Usage,
    /// New connections a second.
    Rate,
    /// Connects that failed for lack of a port.
    Failed,
    /// Time until the ports run out, soonest first.
    TimeLeft,
}

impl SortKey {
    pub const ALL: [Self; 4] = [Self::Usage, Self::Rate, Self::Failed, Self::TimeLeft];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Usage => "ports",
            Self::Rate => "new/s",
            Self::Failed => "failed",
            Self::TimeLeft => "left",
        }
    }

    fn next(self) -> Self {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }
}

/// What a key asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing changed.
    None,
    /// Draw again with the new state.
    Redraw,
    Quit,
}

/// The view's state.
#[derive(Clone, Debug, Default)]
pub struct App {
    pub sort: SortKey,
    /// Rows are kept whose namespace, service or destination contains it
    /// (any case); empty: all.
    pub filter: String,
    /// The filter is being typed.
    pub editing: bool,
    /// The screen keeps the report it showed (tracing goes on).
    pub paused: bool,
    pub help: bool,
    /// Transitions a second between the last two reports drawn.
    pub transitions_per_s: Option<f64>,
    /// (seconds traced, transitions) at the last report drawn.
    last: Option<(f64, u64)>,
}

impl App {
    /// What `key` does.
    pub fn key(&mut self, key: Key) -> Action {
        if key == Key::Interrupt {
            return Action::Quit;
        }
        if self.editing {
            match key {
                Key::Char(c) if !c.is_control() => self.filter.push(c),
                Key::Backspace => {
                    self.filter.pop();
                }
                Key::Enter => self.editing = false,
                Key::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                _ => return Action::None,
            }
            return Action::Redraw;
        }
        match key {
            Key::Char('q') => return Action::Quit,
            Key::Char('s') => self.sort = self.sort.next(),
            Key::Char('/') => {
                self.editing = true;
                self.filter.clear();
            }
            Key::Char('p' | ' ') => self.paused = !self.paused,
            Key::Char('?' | 'h') => self.help = !self.help,
            Key::Esc if self.help => self.help = false,
            Key::Esc if !self.filter.is_empty() => self.filter.clear(),
            _ => return Action::None,
        }
        Action::Redraw
    }

    /// Whether a row with these labels passes the filter.
    pub fn keeps<'a>(&self, labels: impl IntoIterator<Item = &'a str>) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let wanted = self.filter.to_lowercase();
        labels
            .into_iter()
            .any(|l| l.to_lowercase().contains(&wanted))
    }

    /// Notes a new report: the transitions' rate since the last one.
    pub fn sample(&mut self, report: &Report) {
        let now = (
            report.totals.elapsed.as_secs_f64(),
            report.totals.transitions,
        );
        if let Some((t0, n0)) = self.last
            && now.0 > t0
        {
            self.transitions_per_s = Some(now.1.saturating_sub(n0) as f64 / (now.0 - t0));
        }
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            assert_eq!(app.key(Key::Char(c)), Action::Redraw);
        }
    }

    #[test]
    fn sort_cycles_through_every_column() {
        let mut app = App::default();
        let mut seen = vec![app.sort];
        for _ in 0..SortKey::ALL.len() {
            assert_eq!(app.key(Key::Char('s')), Action::Redraw);
            seen.push(app.sort);
        }
        assert_eq!(seen[..4], SortKey::ALL);
        assert_eq!(seen[4], SortKey::Usage, "back to the first");
    }

    #[test]
    fn the_filter_is_typed_kept_and_cleared() {
        let mut app = App::default();
        app.key(Key::Char('/'));
        assert!(app.editing);
        // While typing, q and s are letters, not commands.
        typed(&mut app, "qsx");
        app.key(Key::Backspace);
        assert_eq!(app.filter, "qs");
        assert_eq!(app.sort, SortKey::Usage);
        app.key(Key::Enter);
        assert!(!app.editing);
        assert!(app.keeps(["nginx", "QSomething"]));
        assert!(!app.keeps(["nginx"]));
        // Esc clears it; Esc while typing too.
        assert_eq!(app.key(Key::Esc), Action::Redraw);
        assert!(app.filter.is_empty() && app.keeps(["anything"]));
        app.key(Key::Char('/'));
        typed(&mut app, "ab");
        app.key(Key::Esc);
        assert!(!app.editing && app.filter.is_empty());
        assert_eq!(app.key(Key::Esc), Action::None, "nothing to clear");
    }

    #[test]
    fn quit_pause_and_help() {
        let mut app = App::default();
        assert_eq!(app.key(Key::Char('p')), Action::Redraw);
        assert!(app.paused);
        app.key(Key::Char(' '));
        assert!(!app.paused);
        app.key(Key::Char('?'));
        assert!(app.help);
        app.key(Key::Esc);
        assert!(!app.help);
        assert_eq!(app.key(Key::Char('x')), Action::None);
        assert_eq!(app.key(Key::Char('q')), Action::Quit);
        app.key(Key::Char('/'));
        assert_eq!(app.key(Key::Char('q')), Action::Redraw, "a letter");
        assert_eq!(app.key(Key::Interrupt), Action::Quit, "Ctrl-C always quits");
    }
}
