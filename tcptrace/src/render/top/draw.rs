//! Drawing the live view: a pure function of the report, the view's state
//! and the frame's size. Every figure is the report's; the only one of its
//! own is the transitions' rate between two frames ([`App::sample`]).

use ratatui::{
    Frame,
    layout::{Constraint, Direction, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table},
};

use super::app::{App, SortKey};
use crate::{
    aggregate::ports::DestReport,
    findings::Severity,
    model::{TcpState, Verdict},
    render::ports::seconds,
    report::Report,
    words,
};

/// What one frame shows.
pub struct Screen<'a> {
    pub report: &'a Report,
    pub app: &'a App,
    /// The host's name.
    pub host: &'a str,
    /// The last line tcptrace would have said on stderr (which the screen
    /// covers).
    pub status: Option<&'a str>,
}

/// Findings shown at most (worst first); the rest are counted.
const FINDINGS_MAX: usize = 6;
/// Width of a bar, between its brackets.
const BAR: usize = 10;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, s: &Screen<'_>) {
    let area = frame.area();
    let findings = s.report.findings.len().clamp(1, FINDINGS_MAX) as u16;
    let findings = findings.min(area.height.saturating_sub(8) / 3).max(1);
    let [header, found, dests, lower, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(findings + 1),
        Constraint::Fill(3),
        Constraint::Fill(2),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_lines(s)), header);
    frame.render_widget(findings_widget(s, findings as usize), found);
    frame.render_widget(destinations(s, dests.width), dests);
    let direction = match area.width >= 160 {
        true => Direction::Horizontal,
        false => Direction::Vertical,
    };
    let [services_area, listeners_area] = Layout::default()
        .direction(direction)
        .constraints([Constraint::Fill(3), Constraint::Fill(2)])
        .areas(lower);
    frame.render_widget(services(s), services_area);
    frame.render_widget(listeners(s), listeners_area);
    frame.render_widget(Paragraph::new(footer_line(s)), footer);
    if s.app.help {
        help(frame, area);
    }
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// A section: a rule with its title.
fn section(title: String) -> Block<'static> {
    Block::new()
        .borders(Borders::TOP)
        .title(Span::styled(title, bold()))
}

/// "[#######...]  70 %" for a share, coloured by how full.
fn bar(share: Option<f64>) -> Span<'static> {
    let Some(share) = share else {
        return Span::raw(format!("[{}]    -", " ".repeat(BAR)));
    };
    let filled = ((share.clamp(0.0, 1.0) * BAR as f64).round() as usize).min(BAR);
    let color = match share {
        s if s >= 0.8 => Color::Red,
        s if s >= 0.5 => Color::Yellow,
        _ => Color::Green,
    };
    Span::styled(
        format!(
            "[{}{}]{:>4.0}%",
            "#".repeat(filled),
            ".".repeat(BAR - filled),
            share * 100.0
        ),
        Style::new().fg(color),
    )
}

fn header_lines(s: &Screen<'_>) -> Vec<Line<'static>> {
    let r = s.report;
    let secs = r.totals.elapsed.as_secs();
    let traced = format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let rate = s
        .app
        .transitions_per_s
        .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"));
    let lost = r.totals.lost.total();
    let mut first = vec![
        Span::styled("tcptrace top", bold()),
        Span::raw(format!(
            "  {}  traced {traced}  {rate} transitions/s  ",
            s.host
        )),
        Span::styled(
            format!("{lost} lost"),
            match lost {
                0 => Style::new(),
                _ => Style::new().fg(Color::Red),
            },
        ),
    ];
    if s.app.paused {
        first.push(Span::styled("  [paused]", Style::new().fg(Color::Yellow)));
    }
    let mut states: Vec<String> = r
        .open
        .iter()
        .filter(|o| o.count > 0)
        .map(|o| format!("{} {}", o.state.name(), o.count))
        .collect();
    if let Some(tw) = &r.timewait {
        let (time_wait, orphans) = tw
            .live
            .iter()
            .fold((0, 0), |(t, f), (_, c)| (t + c.time_wait, f + c.fin_wait2));
        states.push(match orphans {
            0 => format!("{} {time_wait}", TcpState::TimeWait.name()),
            n => format!(
                "{} {time_wait} (+{n} FIN_WAIT2 orphans)",
                TcpState::TimeWait.name()
            ),
        });
    }
    let second = match states.is_empty() {
        true => "sockets: none open".to_owned(),
        false => format!("sockets: {}", states.join("  ")),
    };
    vec![Line::from(first), Line::raw(second)]
}

fn findings_widget(s: &Screen<'_>, room: usize) -> Paragraph<'static> {
    let all = &s.report.findings;
    let mut lines: Vec<Line<'static>> = all
        .iter()
        .take(room)
        .map(|f| {
            let (tag, style) = match f.severity {
                Severity::Critical => (
                    "CRIT",
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
                Severity::Warning => ("WARN", Style::new().fg(Color::Yellow)),
                Severity::Info => ("info", Style::new()),
            };
            Line::from(vec![
                Span::styled(format!("{tag} "), style),
                Span::styled(f.headline.clone(), style),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled(
            "nothing wrong seen",
            Style::new().fg(Color::Green),
        ));
    }
    let title = match all.len() > room {
        true => format!(
            " FINDINGS ({} more: diagnose has them all) ",
            all.len() - room
        ),
        false => " FINDINGS ".to_owned(),
    };
    Paragraph::new(lines).block(section(title))
}

/// A destination's labels, for the filter.
fn dest_labels(s: &Screen<'_>, d: &DestReport) -> Vec<String> {
    let mut labels = vec![
        d.dest.netns.to_string(),
        s.report.netns_name(d.dest.netns).unwrap_or_default(),
        d.dest.remote.to_string(),
    ];
    labels.extend(d.owners.iter().map(|(comm, _)| comm.as_str().into_owned()));
    labels
}

/// The destinations shown, in the order asked.
fn dest_rows<'a>(s: &Screen<'a>) -> Vec<&'a DestReport> {
    let mut rows: Vec<&DestReport> = s
        .report
        .ports
        .iter()
        .filter(|d| d.dest.is_other() || s.app.keeps(dest_labels(s, d).iter().map(String::as_str)))
        .collect();
    let key = |d: &DestReport| -> f64 {
        match s.app.sort {
            SortKey::Usage => d.usage.unwrap_or(0.0),
            SortKey::Rate => d.rate,
            SortKey::Failed => d.failed as f64,
            SortKey::TimeLeft => -d.time_left_s.unwrap_or(f64::INFINITY),
        }
    };
    // The pool of the others stays last.
    rows.sort_by(|a, b| {
        (a.dest.is_other(), key(b))
            .partial_cmp(&(b.dest.is_other(), key(a)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    rows
}

/// Width of the PORTS and QUEUE columns: "[##########] 100%".
const BAR_COLUMN: u16 = BAR as u16 + 7;

fn destinations(s: &Screen<'_>, width: u16) -> Table<'static> {
    // Below 100 columns, HOLD and the namespace make room for the names.
    let wide = width >= 100;
    let rows: Vec<Row<'static>> = dest_rows(s)
        .into_iter()
        .map(|d| {
            let name = match d.dest.is_other() {
                true => "(other destinations)".to_owned(),
                false => format!(
                    "{} {}",
                    words::endpoint(&d.dest.remote),
                    words::owners(&d.owners, true, ",", "")
                ),
            };
            let held = match d.capacity {
                Some(c) => format!("{}/{c}", d.held.total()),
                None => d.held.total().to_string(),
            };
            let failed = Cell::from(d.failed.to_string()).style(match d.failing {
                true => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                false => Style::new(),
            });
            let mut cells = vec![Cell::from(name)];
            if wide {
                cells.push(Cell::from(match d.dest.is_other() {
                    true => String::new(),
                    false => words::netns_label(
                        d.dest.netns,
                        s.report.netns_name(d.dest.netns).as_deref(),
                    ),
                }));
            }
            cells.extend([
                Cell::from(bar(d.usage)),
                Cell::from(held),
                Cell::from(format!("{:.1}", d.rate)),
                Cell::from(
                    d.closed_locally
                        .map_or("-".into(), |l| format!("{:.0}%", l * 100.0)),
                ),
            ]);
            if wide {
                cells.push(Cell::from(seconds(d.hold_s)));
            }
            cells.extend([Cell::from(seconds(d.time_left_s)), failed]);
            Row::new(cells)
        })
        .collect();
    let mut header = vec!["DESTINATION"];
    let mut widths = vec![Constraint::Min(20)];
    if wide {
        header.push("NETNS");
        widths.push(Constraint::Length(28));
    }
    header.extend(["PORTS", "HELD", "NEW/S", "LOCAL"]);
    widths.extend([
        Constraint::Length(BAR_COLUMN),
        Constraint::Length(11),
        Constraint::Length(7),
        Constraint::Length(5),
    ]);
    if wide {
        header.push("HOLD");
        widths.push(Constraint::Length(7));
    }
    header.extend(["LEFT", "FAILED"]);
    widths.extend([Constraint::Length(7), Constraint::Length(6)]);
    // The names take what is left, up to 60 columns.
    let fixed: u16 = widths
        .iter()
        .skip(1)
        .map(|w| match w {
            Constraint::Length(n) => n + 1,
            _ => 0,
        })
        .sum();
    widths[0] = Constraint::Length(width.saturating_sub(fixed).clamp(20, 60));
    let filter = match s.app.filter.is_empty() {
        true => String::new(),
        false => format!(", filter \"{}\"", s.app.filter),
    };
    Table::new(rows, widths)
        .header(Row::new(header).style(bold()))
        .block(section(format!(
            " DESTINATIONS by {}{filter} ",
            s.app.sort.name()
        )))
}

fn services(s: &Screen<'_>) -> Table<'static> {
    let names = &s.report.resets.names;
    let rows: Vec<Row<'static>> = s
        .report
        .counts
        .by_service
        .iter()
        .filter_map(|(key, c)| {
            let (name, netns) = match key {
                Some(svc) => (
                    words::service_short(&svc.comm, &c.pids),
                    words::netns_label(svc.netns, s.report.netns_name(svc.netns).as_deref()),
                ),
                None => ("(others)".to_owned(), String::new()),
            };
            let comm = key
                .as_ref()
                .map_or_else(String::new, |svc| svc.comm.as_str().into_owned());
            if key.is_some() && !s.app.keeps([comm.as_str(), netns.as_str()]) {
                return None;
            }
            let v = |verdict: Verdict| c.verdicts[verdict.index()];
            let closed: u64 = c.verdicts.iter().sum();
            let reason = c
                .reasons
                .most_first()
                .first()
                .map_or_else(String::new, |&(r, _)| names.name(r));
            Some(Row::new(vec![
                Cell::from(name),
                Cell::from(netns),
                Cell::from(closed.to_string()),
                Cell::from(v(Verdict::Local).to_string()),
                Cell::from(v(Verdict::Peer).to_string()),
                Cell::from(v(Verdict::AbortSent).to_string()),
                Cell::from(v(Verdict::AbortReceived).to_string()),
                Cell::from(reason),
            ]))
        })
        .collect();
    let header = Row::new([
        "SERVICE", "NETNS", "CLOSED", "LOCAL", "PEER", "RST OUT", "RST IN", "REASON",
    ])
    .style(bold());
    Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Fill(1),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Fill(1),
        ],
    )
    .header(header)
    .block(section(" SERVICES: who closes first ".to_owned()))
}

fn listeners(s: &Screen<'_>) -> Table<'static> {
    let rows: Vec<Row<'static>> = s
        .report
        .listeners
        .iter()
        .filter_map(|l| {
            let netns = words::netns_label(l.netns, s.report.netns_name(l.netns).as_deref());
            let owner = words::process(&l.owner, "");
            if !s.app.keeps([netns.as_str(), owner.as_str()]) {
                return None;
            }
            let q = &l.queue;
            let share = (q.limit > 0).then(|| f64::from(q.queued) / f64::from(q.limit));
            Some(Row::new(vec![
                Cell::from(format!("{} {owner}", words::endpoint(&l.local))),
                Cell::from(netns),
                Cell::from(bar(share)),
                Cell::from(format!("{}/{}", q.queued, q.limit)),
                Cell::from(q.max_queued.to_string()),
            ]))
        })
        .collect();
    let header = Row::new(["LISTENER", "NETNS", "ACCEPT QUEUE", "NOW", "MAX"]).style(bold());
    Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Fill(1),
            Constraint::Length(BAR_COLUMN),
            Constraint::Length(11),
            Constraint::Length(6),
        ],
    )
    .header(header)
    .block(section(" LISTENERS ".to_owned()))
}

fn footer_line(s: &Screen<'_>) -> Line<'static> {
    if s.app.editing {
        return Line::from(vec![
            Span::styled("filter: ", bold()),
            Span::raw(format!("{}_", s.app.filter)),
            Span::raw("   Enter keep  Esc clear"),
        ]);
    }
    let mut spans = vec![Span::raw(format!(
        "q quit  s sort ({})  / filter  p pause  ? help",
        s.app.sort.name()
    ))];
    if let Some(status) = s.status {
        spans.push(Span::styled(
            format!("   {status}"),
            Style::new().fg(Color::Yellow),
        ));
    }
    Line::from(spans)
}

fn help(frame: &mut Frame<'_>, area: Rect) {
    let lines = [
        "q, Ctrl-C   quit (the terminal is left as it was)",
        "s           sort destinations: ports, new/s, failed, left",
        "/           filter by namespace, service or destination",
        "Esc         clear the filter, close this help",
        "p, space    pause the screen (tracing goes on)",
        "?, h        this help",
        "",
        "PORTS: share of a destination's ephemeral ports held;",
        "LEFT: time until they run out at the current rate;",
        "LOCAL: share of its connections this host closed first.",
    ];
    let width = (lines.iter().map(|l| l.len()).max().unwrap_or(0) as u16 + 4).min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines.iter().map(|l| Line::raw(*l)).collect::<Vec<_>>())
            .block(Block::bordered().title(" keys ")),
        rect,
    );
}
