//! The terminal of `tcptrace top`: the alternate screen in raw mode for as
//! long as the view runs, given back as it was on every way out (quit,
//! SIGTERM, an error, a panic); and the keys, read on a thread of their own
//! and handed to the agent's loop.

use std::{
    cell::RefCell,
    io::{self, IsTerminal as _},
    rc::Rc,
};

use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor,
        event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
        execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};
use tokio::sync::mpsc;

use super::{
    app::{Action, App, Key},
    draw::{Screen, draw},
};
use crate::report::Report;

/// What the keyboard thread hands over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Key(Key),
    /// The terminal changed size: draw again.
    Resize,
    /// The keyboard cannot be read any more (why): said on the screen,
    /// whose only way out is then a signal (raw mode makes Ctrl-C a key).
    Lost(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("top draws on a terminal, and stdout is not one; for text, use --summary --interval 1")]
    NotATerminal,
    #[error("cannot set up the terminal: {0}")]
    Terminal(io::Error),
}

/// Lines tcptrace would say on stderr while the screen covers it: the
/// last one is shown at the bottom.
#[derive(Clone, Default)]
pub struct Status(Rc<RefCell<Vec<u8>>>);

impl Status {
    /// Everything still held, for stderr once the screen is gone.
    pub fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.0.borrow_mut())).into_owned()
    }

    /// The last complete line written, without "tcptrace: ".
    fn last(&self) -> Option<String> {
        let bytes = self.0.borrow();
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .last()
            .map(|l| l.trim_start_matches("tcptrace: ").to_owned())
    }
}

impl io::Write for Status {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut lines = self.0.borrow_mut();
        lines.extend_from_slice(buf);
        // The last lines (said on stderr at the end), bounded.
        if lines.len() > 64 << 10 {
            let cut = lines.len() - (16 << 10);
            lines.drain(..cut);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks, before anything is attached, that the view has a terminal.
pub fn check_terminal() -> Result<(), TopError> {
    match io::stdout().is_terminal() {
        true => Ok(()),
        false => Err(TopError::NotATerminal),
    }
}

/// Gives the terminal back as it was; safe to call twice.
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// The live view on the terminal.
pub struct Top {
    terminal: Terminal<CrosstermBackend<io::Stdout>>,
    app: App,
    host: String,
    status: Status,
    /// The report last drawn (kept while paused, drawn again on a key).
    shown: Option<Report>,
    inputs: mpsc::Receiver<Input>,
}

impl Top {
    /// Takes the terminal (alternate screen, raw mode) and starts the
    /// keyboard thread, which drops every privilege first. `status`: where
    /// the session's warnings go meanwhile.
    pub fn start(status: Status) -> Result<Self, TopError> {
        check_terminal()?;
        // A panic anywhere gives the terminal back before its message.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        terminal::enable_raw_mode().map_err(TopError::Terminal)?;
        let terminal = execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())))
            .map_err(|err| {
                restore();
                TopError::Terminal(err)
            })?;
        let (tx, inputs) = mpsc::channel(64);
        std::thread::Builder::new()
            .name("keys".into())
            .spawn(move || {
                if let Err(err) = crate::host::privileges::keep_only(&[]) {
                    let _ = tx.blocking_send(Input::Lost(err.to_string()));
                    return;
                }
                loop {
                    let input = match event::read() {
                        Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                            key(k.code, k.modifiers)
                        }
                        Ok(Event::Resize(..)) => Some(Input::Resize),
                        Ok(_) => None,
                        Err(err) => Some(Input::Lost(err.to_string())),
                    };
                    let lost = matches!(input, Some(Input::Lost(_)));
                    if let Some(input) = input
                        && (tx.blocking_send(input).is_err() || lost)
                    {
                        return;
                    }
                }
            })
            .map_err(|err| {
                restore();
                TopError::Terminal(err)
            })?;
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        Ok(Self {
            terminal,
            app: App::default(),
            host,
            status,
            shown: None,
            inputs,
        })
    }

    /// The next key or resize; never, once the keyboard is lost.
    pub async fn input(&mut self) -> Input {
        match self.inputs.recv().await {
            Some(input) => input,
            None => std::future::pending().await,
        }
    }

    /// A new report: drawn, unless the screen is paused.
    pub fn report(&mut self, report: Report) -> io::Result<()> {
        if self.app.paused && self.shown.is_some() {
            return Ok(());
        }
        self.app.sample(&report);
        self.shown = Some(report);
        self.draw()
    }

    /// What an input does; `true`: quit.
    pub fn handle(&mut self, input: Input) -> io::Result<bool> {
        let action = match input {
            Input::Key(k) => self.app.key(k),
            Input::Resize => {
                self.terminal.autoresize()?;
                Action::Redraw
            }
            Input::Lost(why) => {
                use io::Write as _;
                let _ = writeln!(
                    self.status,
                    "tcptrace: the keyboard cannot be read ({why}): kill tcptrace (SIGTERM) to quit"
                );
                Action::Redraw
            }
        };
        match action {
            Action::Quit => Ok(true),
            Action::Redraw => self.draw().map(|()| false),
            Action::None => Ok(false),
        }
    }

    fn draw(&mut self) -> io::Result<()> {
        let Some(report) = &self.shown else {
            return Ok(());
        };
        let status = self.status.last();
        let screen = Screen {
            report,
            app: &self.app,
            host: &self.host,
            status: status.as_deref(),
        };
        self.terminal.draw(|frame| draw(frame, &screen)).map(|_| ())
    }
}

impl Drop for Top {
    fn drop(&mut self) {
        restore();
    }
}

/// A key as the view understands it.
fn key(code: KeyCode, modifiers: KeyModifiers) -> Option<Input> {
    let key = match code {
        KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    };
    Some(Input::Key(key))
}
