//! `GET /metrics` of a real daemon carrying traffic between two sites:
//! the exposition passes `promtool check metrics`, its counters agree with
//! `l2tp-ctl stats --json`, and a real Prometheus server in the namespace
//! scrapes it and answers a per-tunnel query through its HTTP API. The
//! Grafana dashboard (contrib/grafana-dashboard.json) is valid JSON and
//! queries only series that /metrics has.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use l2tp_tests::{
    daemon::{Config, Daemon, Session, TempDir, Tunnel},
    topology::{self, TwoSites},
    traffic::Stream,
    NetNs, PinDir,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
const METRICS: &str = "127.0.0.1:9561";

fn config(me: &str, peer: &str, initiate: bool, pins: &PinDir) -> String {
    let c = Config { router_id: Some(me.into()), reconnect_interval: Some(1), ..Config::new(me) }
        .dataplane(pins)
        .tunnel(Tunnel {
            sessions: vec![Session { cookie_len: 8, sequencing: true, ..Session::new("pw1", "ac0") }],
            ..Tunnel::new("udp", peer, initiate)
        });
    format!("{}\n[metrics]\nlisten = \"{METRICS}\"\nper_session = true\n", c.toml())
}

/// Two sites with daemons, the pseudowire up; the initiator (pe-a) serves
/// /metrics.
fn two_sites() -> (TwoSites, PinDir, PinDir, Daemon, Daemon) {
    let t = TwoSites::new().expect("topology");
    let (pins_a, pins_b) = (PinDir::new("ma"), PinDir::new("mb"));
    let b = Daemon::start(&t.pe_b, "pe-b", &config(topology::PE_B_UP, topology::PE_A_UP, false, &pins_b))
        .expect("daemon b");
    let a =
        Daemon::start(&t.pe_a, "pe-a", &config(topology::PE_A_UP, topology::PE_B_UP, true, &pins_a)).expect("daemon a");
    for d in [&a, &b] {
        d.wait_json(&["session", "list"], "pw1 up", WAIT, |v| {
            v.as_array().is_some_and(|a| a.iter().any(|s| s["name"] == "pw1" && s["state"] == "established"))
        })
        .expect("session up");
    }
    (t, pins_a, pins_b, a, b)
}

/// `GET path` at `addr` inside `ns`: (status line, body).
fn get(ns: &NetNs, addr: &str, path: &str, accept: &str) -> (String, String) {
    ns.enter(|| {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n")
            .expect("request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("response");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
        (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
    })
    .expect("enter")
}

fn scrape(ns: &NetNs) -> String {
    let (status, body) = get(ns, METRICS, "/metrics", "text/plain");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    body
}

/// The value of the sample `series` (name and labels as written).
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// `field` of the data-plane counters of the sessions of `tunnel` in
/// `l2tp-ctl stats --json`, summed.
fn stats_sum(stats: &Value, tunnel: &str, field: &str) -> u64 {
    stats["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter(|s| s["tunnel"] == tunnel)
        .filter_map(|s| s["dataplane"][field].as_u64())
        .sum()
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn metrics_pass_promtool_and_match_stats_json() {
    let (t, _pa, _pb, a, _b) = two_sites();
    assert_eq!(Stream::new(&t.cust_a, topology::CUST_A, &t.cust_b, topology::CUST_B, 500).run(), 500);
    assert_eq!(Stream::new(&t.cust_b, topology::CUST_B, &t.cust_a, topology::CUST_A, 300).run(), 300);

    // The same moment, bracketed: a scrape, `stats --json`, a scrape. No
    // frame is sent in between, so both bounds hold exactly; were one sent,
    // stats would still lie between them.
    let before = scrape(&t.pe_a);
    let stats = a.json(&["stats"]).expect("stats --json");
    let after = scrape(&t.pe_a);
    for (metric, field, at_least) in [("tx_frames", "tx_packets", 500), ("rx_frames", "rx_packets", 300)] {
        for series in [
            format!("l2tp_tunnel_{metric}_total{{tunnel=\"udp\"}}"),
            format!("l2tp_session_{metric}_total{{tunnel=\"udp\",session=\"pw1\"}}"),
        ] {
            let (m1, m2) = (sample(&before, &series), sample(&after, &series));
            let s = stats_sum(&stats, "udp", field);
            assert!(m1 <= s && s <= m2, "{series}: {m1} <= stats {s} <= {m2}");
            assert!(m1 >= at_least, "{series} = {m1}: the stream's {at_least} frames are counted");
        }
    }
    assert_eq!(sample(&before, "l2tp_tunnel_rx_lost_total{tunnel=\"udp\"}"), stats_sum(&stats, "udp", "rx_lost"));
    assert_eq!(sample(&before, "l2tp_tunnel_up{tunnel=\"udp\"}"), 1);
    assert_eq!(sample(&before, "l2tp_tunnel_state{tunnel=\"udp\",state=\"established\"}"), 1);
    assert_eq!(sample(&before, "l2tp_tunnel_sessions{tunnel=\"udp\"}"), 1);
    assert_eq!(sample(&before, "l2tp_failover_tunnels{state=\"protected\"}"), 1);
    assert!(sample(&before, "l2tp_control_datagrams_received_total") > 0);
    // Per tunnel: the control connection's messages (SCCRQ..SCCCN, ICRQ..,
    // at least 3 each way), nothing retransmitted or refused on a clean link.
    assert!(sample(&before, "l2tp_tunnel_control_messages_received_total{tunnel=\"udp\"}") >= 2);
    assert!(sample(&before, "l2tp_tunnel_control_messages_sent_total{tunnel=\"udp\"}") >= 2);
    assert_eq!(sample(&before, "l2tp_tunnel_auth_failures_total{tunnel=\"udp\"}"), 0);
    let _ = sample(&before, "l2tp_tunnel_control_retransmissions_total{tunnel=\"udp\"}");

    // promtool reads the Prometheus text format and lints it.
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; cargo xtask bootstrap installs it)");
    promtool.stdin.take().expect("stdin").write_all(before.as_bytes()).expect("to promtool");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{before}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // What a scraper that asks for OpenMetrics gets: the crate's own text.
    let (status, om) = get(&t.pe_a, METRICS, "/metrics", "application/openmetrics-text; version=1.0.0");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE l2tp_tunnel_tx_frames counter"), "{om}");
    // The dashboard asks only for series the daemon exports.
    let exported: std::collections::HashSet<&str> = before
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in dashboard_metric_names() {
        assert!(exported.contains(name.as_str()), "the dashboard queries {name}, which /metrics does not have");
    }
    // Nothing else is served.
    assert_eq!(get(&t.pe_a, METRICS, "/", "*/*").0, "HTTP/1.1 404 Not Found");
}

/// A Prometheus server in a namespace, killed on drop.
struct Prometheus {
    child: Child,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(ns: &NetNs, target: &str, web: &str) -> Self {
        let dir = TempDir::new("prometheus").expect("dir");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: l2tp\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .expect("prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = ns
            .command("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus; cargo xtask bootstrap installs it)");
        Self { child, _dir: dir }
    }
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn a_real_prometheus_scrapes_a_per_tunnel_series() {
    let (t, _pa, _pb, _a, _b) = two_sites();
    assert_eq!(Stream::new(&t.cust_a, topology::CUST_A, &t.cust_b, topology::CUST_B, 200).run(), 200);
    let web = "127.0.0.1:9090";
    let _prom = Prometheus::start(&t.pe_a, METRICS, web);
    // l2tp_tunnel_tx_frames_total{tunnel="udp"}, URL-encoded.
    let query = "/api/v1/query?query=l2tp_tunnel_tx_frames_total%7Btunnel%3D%22udp%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let answer = t.pe_a.enter(|| TcpStream::connect(web).is_ok()).expect("enter");
        if answer {
            let (status, body) = get(&t.pe_a, web, query, "application/json");
            if status.contains("200") {
                let v: Value = serde_json::from_str(&body).expect("JSON from the query API");
                let result = &v["data"]["result"];
                if let Some(series) = result.as_array().and_then(|r| r.first()) {
                    assert_eq!(series["metric"]["tunnel"], "udp", "{v:#}");
                    assert_eq!(series["metric"]["job"], "l2tp", "{v:#}");
                    let value: f64 = series["value"][1].as_str().and_then(|s| s.parse().ok()).expect("value");
                    assert!(value >= 200.0, "the stream's 200 frames: {v:#}");
                    return;
                }
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("Prometheus never had l2tp_tunnel_tx_frames_total{{tunnel=\"udp\"}}; last answer: {last}");
}

/// Every `l2tp_...` metric name in the queries (`expr`) and variable
/// queries (`query`) of contrib/grafana-dashboard.json.
fn dashboard_metric_names() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/grafana-dashboard.json");
    let text = std::fs::read_to_string(path).expect("contrib/grafana-dashboard.json");
    let v: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr" | "query", Value::String(q)) => out.push(q.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut queries = Vec::new();
    walk(&v, &mut queries);
    let mut names: Vec<String> = queries
        .iter()
        .flat_map(|q| {
            q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("l2tp_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_dashboard_is_valid_json_and_queries_l2tp_metrics() {
    let names = dashboard_metric_names();
    for want in ["l2tp_tunnel_up", "l2tp_tunnel_sessions", "l2tp_tunnel_rx_bytes_total", "l2tp_tunnel_rx_lost_total"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("l2tp_failover_recover")), "recoveries: {names:?}");
}
