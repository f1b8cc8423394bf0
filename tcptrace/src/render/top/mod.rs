//! `tcptrace top`: the report on one screen, drawn again every interval —
//! the header (host, time traced, transitions a second, losses, sockets by
//! state), the findings worst first, the destinations by port usage with
//! a bar each, the services by who closes first, the listeners' accept
//! queues. The state and its keys ([`app`]) apart from the drawing
//! ([`draw`], a pure function of the report and the frame's size) and from
//! the terminal ([`term`]).

pub mod app;
pub mod draw;
pub mod term;

#[cfg(test)]
mod tests;
