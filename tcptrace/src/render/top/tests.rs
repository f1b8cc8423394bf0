//! The view drawn into a test terminal: an empty host and one whose
//! destination has run out of ports, at 80×24 and 200×50; and its keys'
//! effect on what is drawn.

use ratatui::{Terminal, backend::TestBackend, style::Color};
use serde_json::json;

use super::{
    app::{App, Key},
    draw::{Screen, draw},
};
use crate::{
    aggregate::{listeners::Queue, stats::Stats},
    findings::{Finding, Kind, Listener, Severity},
    model::Comm,
    report::{
        Report, Resets, TimewaitReport,
        fixtures::{binds, full_report, ports_and_namespaces, report_stats},
    },
};

fn finding(kind: Kind, severity: Severity, headline: &str) -> Finding {
    Finding {
        kind,
        severity,
        headline: headline.into(),
        explanation: String::new(),
        numbers: vec![("rport", json!(80))],
        remedy: Vec::new(),
        myths: Vec::new(),
        bites_in_s: None,
    }
}

fn empty() -> Report {
    let stats = Stats::new();
    let mut r = full_report(&stats, &[], &[], &[]);
    r.open.clear();
    r.totals.transitions = 0;
    r.timewait = Some(TimewaitReport::of(&stats, Vec::new(), Vec::new()));
    r.resets = Resets::default();
    r.synack_retransmits.clear();
    r
}

/// A proxy that has run out of ports toward 10.0.0.1:80, with its
/// findings, and a listener with a full queue.
fn exhausted() -> Report {
    let stats = report_stats();
    let (ports, namespaces) = ports_and_namespaces();
    let mut r = full_report(&stats, &ports, &binds(), &namespaces);
    r.findings = vec![
        finding(
            Kind::PortExhaustion,
            Severity::Critical,
            "proxy[42] in netns 7 (proxy) cannot connect to 10.0.0.1:80: no free local port",
        ),
        finding(
            Kind::ListenOverflow,
            Severity::Warning,
            "listen queue of :8080 in netns 1 overflowed 12 times",
        ),
    ];
    r.listeners = vec![Listener {
        netns: 1,
        local: "10.0.0.1:8080".parse().unwrap(),
        owner: Some((7, Comm::from_name("app"))),
        queue: Queue {
            queued: 128,
            limit: 128,
            max_queued: 129,
            full_samples: 4,
        },
    }];
    r
}

fn drawn(report: &Report, app: &App, (w, h): (u16, u16)) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let screen = Screen {
        report,
        app,
        host: "testhost",
        status: None,
    };
    terminal.draw(|f| draw(f, &screen)).unwrap();
    terminal
}

/// The screen's text, line by line.
fn text(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

#[test]
fn empty_host_80x24() {
    insta::assert_snapshot!(text(&drawn(&empty(), &App::default(), (80, 24))).join("\n"));
}

#[test]
fn empty_host_200x50() {
    insta::assert_snapshot!(text(&drawn(&empty(), &App::default(), (200, 50))).join("\n"));
}

#[test]
fn exhausted_destination_80x24() {
    insta::assert_snapshot!(text(&drawn(&exhausted(), &App::default(), (80, 24))).join("\n"));
}

#[test]
fn exhausted_destination_200x50() {
    insta::assert_snapshot!(text(&drawn(&exhausted(), &App::default(), (200, 50))).join("\n"));
}

/// The critical finding in red, the full destination's bar in red.
#[test]
fn what_is_critical_is_red() {
    let terminal = drawn(&exhausted(), &App::default(), (200, 50));
    let lines = text(&terminal);
    let buffer = terminal.backend().buffer();
    let at = |needle: &str| -> (u16, u16) {
        let y = lines.iter().position(|l| l.contains(needle)).unwrap();
        let x = lines[y].find(needle).unwrap();
        (x as u16, y as u16)
    };
    assert_eq!(buffer[at("CRIT")].fg, Color::Red);
    assert_eq!(buffer[at("WARN")].fg, Color::Yellow);
    assert_eq!(buffer[at("[##########]")].fg, Color::Red);
}

/// Keys change what is drawn: the filter hides what it does not match,
/// the sort names its column, help covers the screen.
#[test]
fn keys_change_the_screen() {
    let report = exhausted();
    let mut app = App::default();
    let shows = |app: &App, needle: &str| {
        text(&drawn(&report, app, (200, 50)))
            .iter()
            .any(|l| l.contains(needle))
    };
    assert!(shows(&app, "10.0.0.1:80 proxy[42]"));
    for c in "/nomatch".chars() {
        app.key(Key::Char(c));
    }
    assert!(shows(&app, "filter: nomatch_"));
    app.key(Key::Enter);
    assert!(!shows(&app, "10.0.0.1:80 proxy[42]"));
    assert!(shows(&app, "filter \"nomatch\""));
    app.key(Key::Esc);
    for c in "/PROXY".chars() {
        app.key(Key::Char(c));
    }
    app.key(Key::Enter);
    assert!(shows(&app, "10.0.0.1:80 proxy[42]"), "any case");
    app.key(Key::Char('s'));
    assert!(shows(&app, "DESTINATIONS by new/s"));
    app.key(Key::Char('?'));
    assert!(shows(&app, "sort destinations: ports, new/s, failed, left"));
    app.key(Key::Char('p'));
    assert!(shows(&app, "[paused]"));
}
