//! The help text: what `tcptrace --help` says besides the options.

pub(super) const ABOUT: &str = "Trace TCP state transitions live, with eBPF";

pub(super) const LONG_ABOUT: &str = "\
Trace TCP state transitions live, with eBPF.

tcptrace prints one line for every state change of every TCP socket on the host
(IPv4 and IPv6): connects, accepts, closes, resets. For each it shows the time,
the process that owns the socket, the local and remote endpoints, the old and
new state, and how long the socket spent in the old state, measured in the
kernel to the nanosecond.

It exists for the outages where CPU, memory and disk look fine but the service
is down: ports exhausted by TIME_WAIT, CLOSE_WAIT piling up because an
application never closes, RST storms, a full listen backlog.

COLUMNS
  TIME    wall-clock time of the transition (local time; --utc for UTC)
  PID     the socket's owner: the process whose system calls (connect,
  COMM    listen, close, shutdown...) drove it, or for an accepted socket the
          process listening on its port; sockets that exist at start-up are
          looked up as ss -p does. Never the task that a softirq (a packet, a
          TCP timer) happened to interrupt: '-' when unknown, not a guess
  LOCAL   local address:port ('*' while not yet chosen)
  REMOTE  remote address:port ('*:*' for a listener)
  OLD, NEW  the transition; names as in ss(8)
  MS      milliseconds spent in OLD; '-' when OLD is the initial state of a
          new socket, '?' when unknown (the socket predates tcptrace, or an
          event was lost). Never a made-up 0.

When a connection ends, a 'closed' line gives its verdict (who closed first),
its lifetime in MS, its role (active: this host connected; passive: it
accepted) and the time it spent in each state:
  local           this host sent the first FIN; this side holds TIME_WAIT
  peer            the remote side sent the first FIN
  simultaneous    both FINs crossed (FIN_WAIT1 -> CLOSING)
  abort-sent      this host reset it (SO_LINGER 0, close with unread data)
  abort-received  the peer reset it
  refused         the connect was answered with a RST
  connect-failed  the connect failed otherwise (timeout, ICMP error)
  no-port         connect() found no free local port toward that destination
                  (EADDRNOTAVAIL: the ephemeral port range is exhausted)
  timeout         the kernel gave up on it without FIN or RST
TIME_WAIT, which no other tracer shows (the kernel hands a closing connection
to a separate timewait socket that inet_sock_set_state never reports), is
followed through the kernel's timers: 'FIN_WAIT2 -> TIME_WAIT' when it starts
(its timer's length after MS), 'TIME_WAIT -> CLOSE' when it ends, with its
real duration in MS and why it ended:
  expired         its timer ran out (60 s on Linux, plus timer-wheel slack)
  reused          a connect() took its 4-tuple over (net.ipv4.tcp_tw_reuse)
  reopened        a new SYN for its 4-tuple was accepted by a listener
  killed          ended early: a RST (net.ipv4.tcp_rfc1337=0), ss -K...
  purged          its network namespace went away
and how often its timer was re-armed (a retransmitted FIN extends it). An
orphan whose peer never sends its FIN shows as FIN_WAIT2 in a timewait socket
(net.ipv4.tcp_fin_timeout), not as TIME_WAIT. A connection that had a timewait
socket gets its 'closed' line when that ends, TIME_WAIT included.
On exit, and every --interval, a summary: time-in-state histograms (log2 and
p50/p90/p99/max), who closes first by service, remote endpoint and listening
port (most TIME_WAIT-prone first), and open connections by state with the
oldest one (a CLOSE_WAIT that never closes shows its age here), and TIME_WAIT:
how long it lasted next to its timer's length, why it ended, how many timewait
sockets each network namespace has now (counted from start-up, existing ones
included), and connections that got none because net.ipv4.tcp_max_tw_buckets
was reached (also reported live).

Needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) and a kernel with BTF.
If tracefs is not mounted, tcptrace mounts it on /sys/kernel/tracing and says so.";

pub(super) const EXAMPLES: &str = "\
EXAMPLES
  sudo tcptrace                       every transition, live
  sudo tcptrace --json | jq .         JSON lines, one object per transition
  sudo tcptrace --utc > trace.log     log to a file with UTC timestamps
  sudo tcptrace | grep CLOSE_WAIT     what is entering or leaving CLOSE_WAIT
  sudo tcptrace --lport 80,443        connections on local ports 80 and 443
  sudo tcptrace -c nginx --raddr 10.0.0.0/8
                                      nginx's connections to 10.0.0.0/8
  sudo tcptrace --summary -i 10       only summaries, every 10 seconds
  sudo tcptrace diagnose --for 60     a minute of tracing, then what is wrong
  sudo tcptrace diagnose --json       one JSON summary at the end (and ports_alert records
                                      as they happen), findings first
  sudo tcptrace --summary --metrics 9977
                                      summaries, and Prometheus metrics on
                                      http://127.0.0.1:9977/metrics
  sudo tcptrace --quiet --metrics 0.0.0.0:9977
                                      a daemon: metrics for every host's Prometheus,
                                      nothing on stdout, one line on stderr per problem

Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT) stops tracing, prints the final summary
and a line on stderr: transitions seen, transitions lost because the ring
buffer was full, run time. Losses are also reported live. SIGUSR1 prints a
summary now and tracing goes on. Closing stdout (tcptrace | head) ends
tcptrace quietly.";
