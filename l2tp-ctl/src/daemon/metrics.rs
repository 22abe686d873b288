//! `GET /metrics`: the Prometheus endpoint of `[metrics]` (issue 16).
//!
//! A small HTTP/1.1 server on tokio (GET /metrics only, 404 otherwise, a
//! bounded request, the connection closed after the response). Each scrape
//! asks the daemon task for a [`MetricsView`] over the in-process API
//! channel, the same way `io::serve_api` asks for everything else: names,
//! states and engine counters, no syscall per session. The per-CPU
//! data-plane counters (one map read per session, 65,536 of them at most)
//! are then read from the pinned maps on a blocking thread, never on the
//! event loop. Failover counters and the recovery-duration histogram
//! follow the daemon's event stream (`recovery-started`,
//! `tunnel-recovered`, `tunnel-down`), read from the daemon's own control
//! socket as `l2tp-ctl events` reads it.
//!
//! The exposition is `prometheus-client`'s: OpenMetrics 1.0 for a scraper
//! that asks for it (Prometheus does), else the same text with its
//! metadata lines renamed to the Prometheus text format 0.0.4 (counter
//! families carry their `_total` name, no `# UNIT`/`# EOF`), which is what
//! `promtool check metrics` and older scrapers read.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use l2tp_common::session::SessionStats;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream, UnixStream},
    sync::{mpsc, oneshot},
};
use tracing::{debug, info, warn};

use super::io::ApiCall;
use crate::{
    api::{EventView, HaView, MetricsView, Reply, Request, Response},
    config::Metrics,
    dataplane::Pinned,
};

/// Largest request (line and headers) we read.
const MAX_REQUEST: usize = 8192;
/// A client that has not sent its request by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a scrape waits for the daemon task.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(10);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Starts the listener of `[metrics] listen`, if set, and the follower of
/// the event stream on `socket` (the daemon's API socket). Returns once
/// the listener is bound.
pub(super) async fn serve(cfg: &Metrics, socket: &Path, calls: mpsc::Sender<ApiCall>) -> anyhow::Result<()> {
    let Some(addr) = cfg.listen else { return Ok(()) };
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the metrics listener on {addr}"))?;
    let state = Arc::new(Scraper::new(cfg.per_session, calls));
    tokio::spawn(follow_events(socket.to_owned(), state.failover.clone()));
    tokio::spawn(async move {
        loop {
            let Ok((stream, from)) = listener.accept().await else { continue };
            let state = state.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(stream, &state).await {
                    debug!(%from, "metrics connection: {e:#}");
                }
            });
        }
    });
    info!(%addr, per_session = cfg.per_session, "serving GET /metrics");
    Ok(())
}

/// One HTTP/1.1 exchange, then the connection is closed.
async fn connection(mut stream: TcpStream, state: &Scraper) -> anyhow::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "").await,
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Ok(()),
    };
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_ascii_whitespace();
    let (method, target) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return respond(&mut stream, "404 Not Found", "text/plain", "only /metrics here\n").await;
    }
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET only\n").await;
    }
    let openmetrics = lines.any(|l| {
        l.split_once(':')
            .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text"))
    });
    match state.scrape().await {
        Ok(text) if openmetrics => respond(&mut stream, "200 OK", OPENMETRICS, &text).await,
        Ok(text) => respond(&mut stream, "200 OK", PROMETHEUS_TEXT, &prometheus_text(&text)).await,
        Err(e) => {
            warn!("metrics scrape: {e:#}");
            respond(&mut stream, "503 Service Unavailable", "text/plain", &format!("{e:#}\n")).await
        }
    }
}

/// The request line and headers, up to the blank line; `None` when they
/// exceed [`MAX_REQUEST`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() >= MAX_REQUEST {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> anyhow::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

/// OpenMetrics text from `prometheus-client` as Prometheus text 0.0.4:
/// `# HELP`/`# TYPE` of a counter name its samples (`x_total`), `# UNIT`
/// and `# EOF` dropped. Samples are unchanged (both formats write them
/// alike).
fn prometheus_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len() + 64 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) { "_total" } else { "" };
                out.push_str(&format!("{p}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabel {
    tunnel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabel {
    tunnel: String,
    session: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelStateLabel {
    tunnel: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

/// The tunnel states of the API, each a series of `l2tp_tunnel_state`.
const TUNNEL_STATES: [&str; 7] =
    ["down", "wait-reply", "wait-connect", "established", "awaiting-recovery", "recovering", "closing"];

/// Failover state of a tunnel (`l2tp_failover_tunnels`): established and
/// recoverable by both ends or not, waiting for or in a recovery, or down.
const FAILOVER_STATES: [&str; 5] = ["protected", "unprotected", "awaiting-recovery", "recovering", "down"];

fn failover_state(state: &str, control_recovery: bool) -> &'static str {
    match state {
        "established" if control_recovery => "protected",
        "established" => "unprotected",
        "awaiting-recovery" => "awaiting-recovery",
        "recovering" => "recovering",
        _ => "down",
    }
}

const HA_PARTNER_STATES: [&str; 5] = ["startup", "normal", "recover", "communications-interrupted", "partner-down"];

type Field = fn(&SessionStats) -> u64;

/// The data-plane counters of a session, as `l2tp_{tunnel,session}_NAME_total`.
const DATAPLANE: [(&str, &str, Field); 13] = [
    ("rx_frames", "L2TP data frames received and decapsulated", |s| s.rx_packets),
    ("rx_bytes", "Bytes of the L2TP data frames received", |s| s.rx_bytes),
    ("tx_frames", "Customer frames encapsulated and sent to the peer", |s| s.tx_packets),
    ("tx_bytes", "Bytes of the frames sent to the peer", |s| s.tx_bytes),
    ("rx_lost", "Frames lost: the sum of the gaps when Nr jumped forward", |s| s.rx_lost),
    ("rx_out_of_sequence", "Frames dropped as out of sequence", |s| s.rx_out_of_seq),
    ("rx_duplicates", "Duplicate frames received", |s| s.rx_duplicates),
    ("rx_resyncs", "Sequence number resynchronisations", |s| s.rx_resyncs),
    ("rx_cookie_mismatches", "Frames dropped for a wrong cookie", |s| s.rx_cookie_mismatch),
    ("rx_malformed", "Frames dropped as malformed", |s| s.rx_malformed),
    ("tx_mtu_drops", "Frames dropped for exceeding the uplink MTU", |s| s.tx_mtu_drops),
    ("tx_no_route", "Frames dropped for want of a route or neighbour", |s| s.tx_no_route),
    ("redirect_errors", "Frames the redirect to the other interface failed for", |s| s.redirect_errors),
];

fn add_stats(a: &mut SessionStats, b: &SessionStats) {
    a.rx_packets += b.rx_packets;
    a.rx_bytes += b.rx_bytes;
    a.tx_packets += b.tx_packets;
    a.tx_bytes += b.tx_bytes;
    a.rx_out_of_seq += b.rx_out_of_seq;
    a.rx_lost += b.rx_lost;
    a.rx_duplicates += b.rx_duplicates;
    a.rx_resyncs += b.rx_resyncs;
    a.rx_cookie_mismatch += b.rx_cookie_mismatch;
    a.rx_malformed += b.rx_malformed;
    a.tx_mtu_drops += b.tx_mtu_drops;
    a.redirect_errors += b.redirect_errors;
    a.tx_no_route += b.tx_no_route;
}

/// A counter went backwards: the session's slot was cleared (a rebuilt
/// data plane) or reused.
fn went_back(now: &SessionStats, before: &SessionStats) -> bool {
    DATAPLANE.iter().any(|(_, _, f)| f(now) < f(before))
}

/// The global counters of the uplink program, as `l2tp_dataplane_NAME`.
fn global_name(counter: &str) -> Option<(&'static str, &'static str)> {
    Some(match counter {
        "frames" => ("dataplane_frames", "Frames the uplink program saw"),
        "l2tp_udp" => ("dataplane_l2tp_udp_frames", "L2TP over UDP frames seen on the uplinks"),
        "l2tp_ip" => ("dataplane_l2tp_ip_frames", "L2TPv3 over IP frames seen on the uplinks"),
        "control" => ("dataplane_control_frames", "L2TP control messages passed to the daemon"),
        "data" => ("dataplane_data_frames", "L2TP data frames seen on the uplinks"),
        "malformed" => ("dataplane_malformed_frames", "L2TP frames with unsound outer headers"),
        "ip_unparsed" => ("dataplane_ip_unparsed_frames", "IPv4 fragments and packets with options, passed"),
        "standby" => ("dataplane_standby_frames", "Frames of sessions held inactive on a hot standby"),
        _ => return None,
    })
}

/// Recoveries seen in the event stream.
#[derive(Debug)]
struct FailoverCounters {
    started: Counter,
    succeeded: Counter,
    failed: Counter,
    duration: Histogram,
    /// Old tunnel ID -> `time_ms` of its `recovery-started`.
    pending: Mutex<HashMap<u32, u64>>,
}

impl FailoverCounters {
    fn new() -> Self {
        Self {
            started: Counter::default(),
            succeeded: Counter::default(),
            failed: Counter::default(),
            duration: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            pending: Mutex::default(),
        }
    }

    /// `recovery-started`: we opened a recovery tunnel for an old one.
    /// `tunnel-recovered`: done, as either endpoint (the remote endpoint of
    /// a recovery sees no start: its recovery is counted as started when
    /// it succeeds). `tunnel-down` of a tunnel being recovered: failed.
    fn observe(&self, ev: &EventView) {
        let Some(id) = ev.tunnel_id else { return };
        let Ok(mut pending) = self.pending.lock() else { return };
        match ev.event.as_str() {
            "recovery-started" => {
                self.started.inc();
                pending.insert(id, ev.time_ms);
            }
            "tunnel-recovered" => {
                match pending.remove(&id) {
                    Some(t0) => self.duration.observe(ev.time_ms.saturating_sub(t0) as f64 / 1000.0),
                    None => {
                        self.started.inc();
                    }
                }
                self.succeeded.inc();
            }
            "tunnel-down" if pending.remove(&id).is_some() => {
                self.failed.inc();
            }
            _ => {}
        }
    }
}

/// Follows the daemon's event stream on its API socket for as long as the
/// daemon runs. A reconnection is replayed the kept events: those already
/// seen are skipped by their time.
async fn follow_events(socket: PathBuf, failover: Arc<FailoverCounters>) {
    let mut seen: (u64, usize) = (0, 0);
    loop {
        if let Err(e) = follow_once(&socket, &failover, &mut seen).await {
            debug!("metrics: event stream: {e:#}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn follow_once(socket: &Path, failover: &FailoverCounters, seen: &mut (u64, usize)) -> anyhow::Result<()> {
    let stream = UnixStream::connect(socket).await?;
    let (r, mut w) = stream.into_split();
    w.write_all(b"{\"cmd\":\"events\"}\n").await?;
    let mut lines = BufReader::new(r).lines();
    match lines.next_line().await? {
        Some(l) if matches!(serde_json::from_str(&l)?, Response::Ok(Reply::Following)) => {}
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
    let (last_ms, mut skip) = *seen;
    while let Some(line) = lines.next_line().await? {
        let ev: EventView = serde_json::from_str(&line)?;
        if ev.time_ms < last_ms {
            continue;
        }
        if ev.time_ms == last_ms && skip > 0 {
            skip -= 1;
            continue;
        }
        *seen = if ev.time_ms == seen.0 { (seen.0, seen.1 + 1) } else { (ev.time_ms, 1) };
        failover.observe(&ev);
    }
    Ok(())
}

/// What a scrape needs between scrapes.
#[derive(Debug)]
struct Scraper {
    per_session: bool,
    calls: mpsc::Sender<ApiCall>,
    failover: Arc<FailoverCounters>,
    /// Per-tunnel sums stay monotonic when sessions go: the last counters
    /// seen of each session, and what sessions gone (or reset) had counted.
    sessions: Mutex<Retired>,
}

#[derive(Debug, Default)]
struct Retired {
    last: HashMap<(String, u32), SessionStats>,
    gone: HashMap<String, SessionStats>,
}

/// The data-plane counters of one scrape.
#[derive(Debug, Default)]
struct DataplaneRead {
    /// Per (tunnel, local session ID).
    sessions: HashMap<(String, u32), SessionStats>,
    global: Vec<(&'static str, u64)>,
}

impl Scraper {
    fn new(per_session: bool, calls: mpsc::Sender<ApiCall>) -> Self {
        Self { per_session, calls, failover: Arc::new(FailoverCounters::new()), sessions: Mutex::default() }
    }

    async fn ask(&self, req: Request) -> anyhow::Result<Reply> {
        let (tx, rx) = oneshot::channel();
        self.calls.send((req, tx)).await.map_err(|_| anyhow::anyhow!("the daemon is stopping"))?;
        match tokio::time::timeout(DAEMON_TIMEOUT, rx).await {
            Ok(Ok(Response::Ok(r))) => Ok(r),
            Ok(Ok(Response::Error(e))) => anyhow::bail!("{e}"),
            Ok(Err(_)) => anyhow::bail!("the daemon is stopping"),
            Err(_) => anyhow::bail!("the daemon did not answer in {} s", DAEMON_TIMEOUT.as_secs()),
        }
    }

    /// One scrape, as OpenMetrics text.
    async fn scrape(&self) -> anyhow::Result<String> {
        let view = match self.ask(Request::Metrics).await? {
            Reply::Metrics(v) => v,
            r => anyhow::bail!("unexpected reply {r:?}"),
        };
        // Hook for the hot standby: absent without an [ha] section.
        let ha = match self.ask(Request::HaStatus).await {
            Ok(Reply::Ha(h)) => Some(h),
            _ => None,
        };
        let wanted: Vec<(String, u32)> =
            view.tunnels.iter().flat_map(|t| t.sessions.iter().map(|s| (t.name.clone(), s.local_id))).collect();
        let read = match view.dataplane.clone() {
            Some(dir) => tokio::task::spawn_blocking(move || read_dataplane(Path::new(&dir), &wanted))
                .await
                .context("data-plane reader")??,
            None => DataplaneRead::default(),
        };
        let totals = self.tunnel_totals(&view, &read);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry(&view, &read, &totals, ha.as_ref()))?;
        Ok(text)
    }

    /// Per-tunnel sums of the data-plane counters: the sessions there now,
    /// plus what the ones gone had counted.
    fn tunnel_totals(&self, view: &MetricsView, read: &DataplaneRead) -> HashMap<String, SessionStats> {
        let Ok(mut r) = self.sessions.lock() else { return HashMap::new() };
        let Retired { last, gone } = &mut *r;
        for (key, before) in last.iter() {
            let now = read.sessions.get(key);
            if now.is_none_or(|n| went_back(n, before)) {
                add_stats(gone.entry(key.0.clone()).or_default(), before);
            }
        }
        // Tunnels no longer configured take their history with them.
        let names: HashSet<&str> = view.tunnels.iter().map(|t| t.name.as_str()).collect();
        gone.retain(|t, _| names.contains(t.as_str()));
        *last = read.sessions.clone();
        let mut totals: HashMap<String, SessionStats> =
            view.tunnels.iter().map(|t| (t.name.clone(), gone.get(&t.name).copied().unwrap_or_default())).collect();
        for ((tunnel, _), s) in &read.sessions {
            if let Some(t) = totals.get_mut(tunnel) {
                add_stats(t, s);
            }
        }
        totals
    }

    fn registry(
        &self,
        view: &MetricsView,
        read: &DataplaneRead,
        totals: &HashMap<String, SessionStats>,
        ha: Option<&HaView>,
    ) -> Registry {
        let mut reg = Registry::with_prefix("l2tp");
        let tunnel = |name: &str| TunnelLabel { tunnel: name.to_owned() };

        // Control plane (the engine counts for all tunnels together).
        let c = &view.control;
        for (name, help, v) in [
            ("control_datagrams_received", "Control datagrams received", c.datagrams),
            ("control_malformed", "Control datagrams that did not parse", c.malformed),
            ("control_unknown_tunnel", "Control datagrams for a tunnel we do not have", c.unknown_tunnel),
            ("control_auth_failures", "Control messages that failed authentication", c.auth_failures),
            ("control_refused", "Control connections refused", c.refused),
            ("control_stopccn_sent", "StopCCN messages sent", c.stopccn_sent),
            ("control_cdn_sent", "CDN messages sent", c.cdn_sent),
            ("control_ignored", "Control messages ignored", c.ignored),
        ] {
            let counter = Counter::<u64>::default();
            counter.inc_by(v);
            reg.register(name, help, counter);
        }

        // Tunnels: state, control channel, sessions.
        let state = Family::<TunnelStateLabel, Gauge>::default();
        let up = Family::<TunnelLabel, Gauge>::default();
        let unacked = Family::<TunnelLabel, Gauge>::default();
        let established = Family::<TunnelLabel, Gauge>::default();
        let configured = Family::<TunnelLabel, Gauge>::default();
        let stale = Family::<TunnelLabel, Gauge>::default();
        let unconfirmed = Family::<TunnelLabel, Gauge>::default();
        let by_failover = Family::<StateLabel, Gauge>::default();
        let msgs_in = Family::<TunnelLabel, Counter>::default();
        let msgs_out = Family::<TunnelLabel, Counter>::default();
        let retrans = Family::<TunnelLabel, Counter>::default();
        let auth = Family::<TunnelLabel, Counter>::default();
        for s in FAILOVER_STATES {
            by_failover.get_or_create(&StateLabel { state: s.into() }).set(0);
        }
        for t in &view.tunnels {
            for s in TUNNEL_STATES {
                let l = TunnelStateLabel { tunnel: t.name.clone(), state: s.into() };
                state.get_or_create(&l).set(i64::from(t.state == s));
            }
            up.get_or_create(&tunnel(&t.name)).set(i64::from(t.state == "established"));
            unacked.get_or_create(&tunnel(&t.name)).set(t.unacknowledged as i64);
            msgs_in.get_or_create(&tunnel(&t.name)).inc_by(t.messages_received);
            msgs_out.get_or_create(&tunnel(&t.name)).inc_by(t.messages_sent);
            retrans.get_or_create(&tunnel(&t.name)).inc_by(t.retransmissions);
            auth.get_or_create(&tunnel(&t.name)).inc_by(t.auth_failures);
            established.get_or_create(&tunnel(&t.name)).set(t.sessions_established as i64);
            configured.get_or_create(&tunnel(&t.name)).set(t.sessions_configured as i64);
            stale.get_or_create(&tunnel(&t.name)).set(t.stale_sessions as i64);
            unconfirmed.get_or_create(&tunnel(&t.name)).set(t.unconfirmed_sessions as i64);
            let fs = failover_state(&t.state, t.control_recovery);
            by_failover.get_or_create(&StateLabel { state: fs.into() }).inc();
        }
        reg.register("tunnel_state", "1 for the state the tunnel is in, 0 for the others", state);
        reg.register("tunnel_up", "1 when the control connection is established", up);
        reg.register("tunnel_unacknowledged_messages", "Control messages sent and not yet acknowledged", unacked);
        reg.register(
            "tunnel_control_messages_received",
            "Control messages received on the tunnel's control connection (a new connection starts from 0)",
            msgs_in,
        );
        reg.register(
            "tunnel_control_messages_sent",
            "Control messages sent on the tunnel's control connection, retransmissions included",
            msgs_out,
        );
        reg.register("tunnel_control_retransmissions", "Control messages retransmitted on the tunnel", retrans);
        reg.register("tunnel_auth_failures", "Control messages of the tunnel that failed authentication", auth);
        reg.register("tunnel_sessions", "Sessions established on the tunnel", established);
        reg.register("tunnel_sessions_configured", "Sessions configured on the tunnel", configured);

        // Failover (RFC 4951).
        reg.register("failover_tunnels", "Tunnels by failover state", by_failover);
        reg.register("failover_stale_sessions", "Sessions the peer pairs with another one (queried)", stale);
        reg.register("failover_unconfirmed_sessions", "Sessions queried after a recovery, no answer yet", unconfirmed);
        let f = &self.failover;
        reg.register("failover_recoveries_started", "Recoveries started", f.started.clone());
        reg.register("failover_recoveries_succeeded", "Recoveries that recovered the tunnel", f.succeeded.clone());
        reg.register("failover_recoveries_failed", "Recoveries that ended with the tunnel down", f.failed.clone());
        reg.register(
            "failover_recovery_duration_seconds",
            "From recovery-started to tunnel-recovered",
            f.duration.clone(),
        );

        // Data plane: per tunnel, and per session when asked for.
        for (name, help, field) in DATAPLANE {
            let per_tunnel = Family::<TunnelLabel, Counter>::default();
            for (t, s) in totals {
                per_tunnel.get_or_create(&tunnel(t)).inc_by(field(s));
            }
            reg.register(format!("tunnel_{name}"), format!("{help}, all sessions of the tunnel"), per_tunnel);
        }
        if self.per_session {
            let names: HashMap<(&str, u32), &str> = view
                .tunnels
                .iter()
                .flat_map(|t| t.sessions.iter().map(|s| ((t.name.as_str(), s.local_id), s.name.as_str())))
                .collect();
            for (name, help, field) in DATAPLANE {
                let per_session = Family::<SessionLabel, Counter>::default();
                for ((t, sid), s) in &read.sessions {
                    let session = names.get(&(t.as_str(), *sid)).map_or_else(|| sid.to_string(), |n| (*n).to_owned());
                    per_session.get_or_create(&SessionLabel { tunnel: t.clone(), session }).inc_by(field(s));
                }
                reg.register(format!("session_{name}"), help, per_session);
            }
        }
        for (counter, v) in &read.global {
            if let Some((name, help)) = global_name(counter) {
                let c = Counter::<u64>::default();
                c.inc_by(*v);
                reg.register(name, help, c);
            }
        }

        // The hot standby, when configured.
        if let Some(h) = ha {
            let role = Family::<RoleLabel, Gauge>::default();
            for r in ["active", "standby"] {
                role.get_or_create(&RoleLabel { role: r.into() }).set(i64::from(h.role == r));
            }
            let partner = Family::<StateLabel, Gauge>::default();
            for s in HA_PARTNER_STATES {
                partner.get_or_create(&StateLabel { state: s.into() }).set(i64::from(h.partner_state == s));
            }
            reg.register("ha_role", "1 for this node's role", role);
            reg.register("ha_partner_state", "1 for the partner state this node is in", partner);
            let gauge = |v: i64| {
                let g = Gauge::<i64>::default();
                g.set(v);
                g
            };
            reg.register("ha_term", "Current term (the newest takeover)", gauge(h.term as i64));
            reg.register("ha_partner_connected", "1 when the partner channel is up", gauge(i64::from(h.connected)));
            reg.register(
                "ha_replication_unacknowledged_updates",
                "Updates the standby has not acknowledged",
                gauge(h.unacknowledged as i64),
            );
            let lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            lag.set(h.oldest_unacknowledged_ms.unwrap_or(0) as f64 / 1000.0);
            reg.register("ha_replication_lag_seconds", "Age of the oldest unacknowledged update", lag);
            let takeovers = Counter::<u64>::default();
            takeovers.inc_by(h.takeovers);
            reg.register("ha_takeovers", "Takeovers by this node", takeovers);
        }
        reg
    }
}

/// Reads the per-CPU counters of `wanted` sessions from the pinned maps
/// (a blocking thread: one map read per session).
fn read_dataplane(dir: &Path, wanted: &[(String, u32)]) -> anyhow::Result<DataplaneRead> {
    let pinned = Pinned::open(dir)?;
    let table = pinned.sessions()?;
    let mut sessions = HashMap::with_capacity(wanted.len());
    for (tunnel, sid) in wanted {
        let Some(idx) = table.index_of(*sid) else { continue };
        if let Ok(s) = table.stats(idx) {
            sessions.insert((tunnel.clone(), *sid), s);
        }
    }
    let global = pinned.global_stats()?.iter().collect();
    Ok(DataplaneRead { sessions, global })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_becomes_prometheus_text() {
        let om = "# HELP l2tp_x Frames.\n# TYPE l2tp_x counter\nl2tp_x_total{tunnel=\"a\"} 5\n\
                  # HELP l2tp_up Up.\n# TYPE l2tp_up gauge\nl2tp_up 1\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP l2tp_x_total Frames.\n# TYPE l2tp_x_total counter\nl2tp_x_total{tunnel=\"a\"} 5\n\
             # HELP l2tp_up Up.\n# TYPE l2tp_up gauge\nl2tp_up 1\n"
        );
    }

    fn ev(event: &str, id: u32, time_ms: u64) -> EventView {
        EventView {
            time_ms,
            event: event.into(),
            tunnel: Some("t".into()),
            tunnel_id: Some(id),
            session: None,
            session_id: None,
            detail: String::new(),
        }
    }

    #[test]
    fn recoveries_are_counted_from_the_events() {
        let f = FailoverCounters::new();
        f.observe(&ev("recovery-started", 1, 1000));
        f.observe(&ev("tunnel-recovered", 1, 1500));
        f.observe(&ev("recovery-started", 2, 2000));
        f.observe(&ev("tunnel-down", 2, 9000));
        // The remote endpoint of a recovery only sees it succeed.
        f.observe(&ev("tunnel-recovered", 3, 9500));
        f.observe(&ev("tunnel-down", 3, 9600));
        assert_eq!((f.started.get(), f.succeeded.get(), f.failed.get()), (3, 2, 1));
        let mut reg = Registry::default();
        reg.register("d", "d", f.duration.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
        assert!(text.contains("d_count 1\n") && text.contains("d_sum 0.5\n"), "{text}");
    }

    #[test]
    fn tunnel_sums_keep_what_sessions_gone_counted() {
        let (tx, _rx) = mpsc::channel(1);
        let s = Scraper::new(false, tx);
        let view = MetricsView {
            tunnels: vec![crate::api::TunnelMetrics { name: "t".into(), ..Default::default() }],
            ..MetricsView::default()
        };
        let stats = |rx| SessionStats { rx_packets: rx, ..SessionStats::default() };
        let read = |v: &[(u32, u64)]| DataplaneRead {
            sessions: v.iter().map(|(sid, rx)| (("t".to_owned(), *sid), stats(*rx))).collect(),
            global: Vec::new(),
        };
        assert_eq!(s.tunnel_totals(&view, &read(&[(1, 10), (2, 5)]))["t"].rx_packets, 15);
        // Session 2 goes: its 5 stay counted.
        assert_eq!(s.tunnel_totals(&view, &read(&[(1, 12)]))["t"].rx_packets, 17);
        // Session 1 is reset (a rebuilt data plane): its 12 stay counted.
        assert_eq!(s.tunnel_totals(&view, &read(&[(1, 3)]))["t"].rx_packets, 20);
    }
}
