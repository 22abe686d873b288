//! `report.json`, `report.md` and `dataplane.svg`: the run's figures,
//! their ratios and the goals they are judged against.

use anyhow::Result;
use serde_json::{json, Value};

use l2tp_ctl::pktgen;

use super::{control, ha, Opts, Series};

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn online_cpus() -> i64 {
    // SAFETY: no preconditions.
    i64::from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as i32)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

pub(crate) fn r1(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 10.0).round() / 10.0)
    } else {
        Value::Null
    }
}

pub(crate) fn report(
    o: &Opts,
    s: &Series,
    control: Option<&control::Results>,
    scale: Option<&control::Results>,
    ha: Option<&ha::Results>,
    notes: &[String],
) -> Result<()> {
    std::fs::create_dir_all(&o.out)?;
    let tr = |size: usize, stat: fn(&Series, &str) -> f64| {
        let mut m = serde_json::Map::new();
        for k in [
            "empty",
            "encap",
            "encap_fib",
            "decap_udp4",
            "decap_ip6",
            "decap_udp4_65536",
            "decap_udp4_65536_hash",
            "encap_no_trace",
            "decap_udp4_no_trace",
        ] {
            m.insert(k.into(), r1(stat(s, &format!("testrun.{size}.{k}"))));
        }
        Value::Object(m)
    };
    let lv = |size: usize, stat: fn(&Series, &str) -> f64| {
        let mut m = serde_json::Map::new();
        for k in ["redirect", "encap", "encap_fib", "decap", "vxlan"] {
            m.insert(k.into(), r1(stat(s, &format!("live.{size}.{k}"))));
        }
        Value::Object(m)
    };
    // Rate ratios (rate = 1 / ns), rounded to 0.01: of paths measured in
    // the same slice, their median and the lowest slice's; and, for
    // comparison, the ratio of the paths' medians.
    let rounded = |v: f64| if v.is_finite() { json!((v * 100.0).round() / 100.0) } else { Value::Null };
    let paired_by = |size: usize, stat: fn(&Series, &str) -> f64| {
        let m =
            super::RATIOS.iter().map(|(k, _, _)| (k.to_string(), rounded(stat(s, &format!("live.{size}.ratio.{k}")))));
        Value::Object(m.collect())
    };
    let of_medians = || {
        let live = |k: &str| s.median(&format!("live.64.{k}"));
        Value::Object(
            super::RATIOS.iter().map(|(k, ours, base)| (k.to_string(), rounded(live(base) / live(ours)))).collect(),
        )
    };
    let mut j = json!({
        "machine": { "cpu": cpu_model(), "cpus": online_cpus(), "pinned_to_cpu": pktgen::current_cpu(), "kernel": kernel() },
        "method": {
            "rounds": o.rounds,
            "statistic": "median over rounds (min in *_min)",
            "testrun_repeat": o.testrun_repeat,
            "live_seconds_per_run": o.live_time.as_secs_f64(),
            "live_slices_per_run": super::LIVE_SLICES,
            "ratio_statistic": "median over rounds x slices of the ratio of paths measured in the same slice (lowest in ratio_min; ratio_of_medians for comparison)",
            "frame": "64-byte customer frames (1500 in *_1500); decap frames carry them in L2TPv3 with sequence numbers",
        },
        "dataplane": {
            "testrun_ns": tr(64, Series::median),
            "testrun_ns_min": tr(64, Series::min),
            "testrun_ns_1500": tr(1500, Series::median),
            "live_ns": lv(64, Series::median),
            "live_ns_min": lv(64, Series::min),
            "live_ns_1500": lv(1500, Series::median),
            "ratio": paired_by(64, Series::median),
            "ratio_min": paired_by(64, Series::min),
            "ratio_1500": paired_by(1500, Series::median),
            "ratio_of_medians": of_medians(),
        },
        "notes": notes,
    });
    if let Some(c) = control {
        j["control"] = c.json();
    }
    if let Some(c) = scale {
        j["control_scale"] = c.json();
    }
    if let Some(h) = ha {
        j["ha"] = h.json(j.get("control"));
    }
    std::fs::write(o.out.join("report.json"), serde_json::to_string_pretty(&j)? + "\n")?;
    std::fs::write(o.out.join("report.md"), markdown(&j, s))?;
    std::fs::write(o.out.join("dataplane.svg"), svg(s))?;
    eprintln!("bench: wrote {}/report.json, report.md and dataplane.svg", o.out.display());
    Ok(())
}

pub(crate) fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f >= 1000.0 => format!("{f:.0}"),
        Some(f) if f < 10.0 => format!("{f:.2}"),
        Some(f) => format!("{f:.1}"),
        None => "n/a".into(),
    }
}

fn markdown(j: &Value, s: &Series) -> String {
    let d = &j["dataplane"];
    let mut m = String::new();
    m.push_str(&format!(
        "# Benchmark report\n\nMachine: {} ({} CPUs), Linux {}. {} rounds, baselines interleaved; median (min).\n\n",
        j["machine"]["cpu"].as_str().unwrap_or(""),
        j["machine"]["cpus"],
        j["machine"]["kernel"].as_str().unwrap_or(""),
        j["method"]["rounds"]
    ));
    m.push_str("## Data plane, BPF_PROG_TEST_RUN (ns per packet)\n\n| program | 64 B | 1500 B | added over empty (64 B) |\n|---|---|---|---|\n");
    let empty = s.median("testrun.64.empty");
    for (k, what) in [
        ("empty", "empty program"),
        ("encap", "encap UDP/IPv4, sequencing"),
        ("encap_fib", "encap UDP/IPv4, sequencing, next hop by bpf_fib_lookup"),
        ("decap_udp4", "decap UDP/IPv4, sequencing"),
        ("decap_ip6", "decap IP/IPv6, sequencing"),
        ("decap_udp4_65536", "decap UDP/IPv4, 65,536 sessions"),
        ("decap_udp4_65536_hash", "decap UDP/IPv4, 65,536 sessions, ID outside its home slot (hash)"),
        ("encap_no_trace", "encap UDP/IPv4, sequencing, object built without drop tracing"),
        ("decap_udp4_no_trace", "decap UDP/IPv4, sequencing, object built without drop tracing"),
    ] {
        if d["testrun_ns"][k].is_null() {
            continue;
        }
        m.push_str(&format!(
            "| {what} | {} ({}) | {} | {} |\n",
            num(&d["testrun_ns"][k]),
            num(&d["testrun_ns_min"][k]),
            num(&d["testrun_ns_1500"][k]),
            if k == "empty" { "-".into() } else { format!("{:.1}", s.median(&format!("testrun.64.{k}")) - empty) }
        ));
    }
    let traced = |with: &str, without: &str| {
        let (a, b) = (s.median(&format!("testrun.64.{with}")), s.median(&format!("testrun.64.{without}")));
        (a.is_finite() && b.is_finite()).then_some((a, b))
    };
    if let (Some((de, dn)), Some((ee, en))) =
        (traced("decap_udp4", "decap_udp4_no_trace"), traced("encap", "encap_no_trace"))
    {
        m.push_str(&format!(
            "\nDrop tracing compiled in and off (nobody tracing) against the same object built without it, same run: decap {de:.1} vs {dn:.1} ns ({:+.1}), encap {ee:.1} vs {en:.1} ns ({:+.1}).\n",
            de - dn,
            ee - en
        ));
    }
    m.push_str("\nEncap and decap are measured through wrappers that restore the frame with one more `bpf_xdp_adjust_head` (and stamp the next sequence number), so that every repetition takes the full delivery path; that adds a few ns.\n\n");
    m.push_str("## Data plane, live frames through veth (ns per delivered packet)\n\n| path | 64 B | 1500 B | Mpps (64 B) |\n|---|---|---|---|\n");
    for (k, what) in [
        ("redirect", "minimal redirect_map (speed of light)"),
        ("decap", "our decap"),
        ("encap", "our encap"),
        ("encap_fib", "our encap, next hop by bpf_fib_lookup"),
        ("vxlan", "Linux bridge + VXLAN encap"),
    ] {
        let ns = d["live_ns"][k].as_f64().unwrap_or(f64::NAN);
        m.push_str(&format!(
            "| {what} | {} ({}) | {} | {:.2} |\n",
            num(&d["live_ns"][k]),
            num(&d["live_ns_min"][k]),
            num(&d["live_ns_1500"][k]),
            1e3 / ns
        ));
    }
    m.push_str(&format!(
        "\nRate ratios, each the median of the paths' ratios in the same slice ({} slices per round; 1500 B in brackets, lowest slice at 64 B after the slash): encap/redirect {} [{}] / {} (with bpf_fib_lookup {} [{}] / {}), decap/redirect {} [{}] / {}, encap/VXLAN {}.\n",
        j["method"]["live_slices_per_run"],
        num(&d["ratio"]["encap_vs_redirect"]),
        num(&d["ratio_1500"]["encap_vs_redirect"]),
        num(&d["ratio_min"]["encap_vs_redirect"]),
        num(&d["ratio"]["encap_fib_vs_redirect"]),
        num(&d["ratio_1500"]["encap_fib_vs_redirect"]),
        num(&d["ratio_min"]["encap_fib_vs_redirect"]),
        num(&d["ratio"]["decap_vs_redirect"]),
        num(&d["ratio_1500"]["decap_vs_redirect"]),
        num(&d["ratio_min"]["decap_vs_redirect"]),
        num(&d["ratio"]["vxlan_vs_encap"])
    ));
    if let Some(c) = j.get("control") {
        m.push_str("\n## Control plane\n\n| measurement | value |\n|---|---|\n");
        for (k, what) in [
            ("sessions", "sessions (tunnels x sessions per tunnel)"),
            ("setup_sessions_per_s", "sessions set up per second"),
            ("reestablish_ms", "tear down and re-establish all, ms"),
            ("rss_mb_10k_sessions", "daemon resident memory, MB"),
        ] {
            m.push_str(&format!("| {what} | {} |\n", num(&c[k])));
        }
        control_md(&mut m, c);
    }
    if let Some(c) = j.get("control_scale") {
        m.push_str(&format!(
            "\n## Control plane at scale ({} tunnels, {} sessions, one round)\n\n| measurement | value |\n|---|---|\n",
            c["tunnels"], c["sessions"]
        ));
        for (k, what) in [
            ("setup_sessions_per_s", "sessions set up per second"),
            ("rss_mb", "daemon resident memory, MB"),
            ("reestablish_ms", "tear down and re-establish all, ms"),
        ] {
            m.push_str(&format!("| {what} | {} |\n", num(&c[k])));
        }
        control_md(&mut m, c);
    }
    if let Some(h) = j.get("ha") {
        ha::markdown(&mut m, h);
    }
    if let Some(notes) = j["notes"].as_array().filter(|n| !n.is_empty()) {
        m.push_str("\n## Notes\n\n");
        for n in notes {
            m.push_str(&format!("- {}\n", n.as_str().unwrap_or("")));
        }
    }
    m
}

/// Recoveries, floor and phases of one control-plane run.
fn control_md(m: &mut String, c: &Value) {
    for k in ["control_only", "control_and_data"] {
        m.push_str(&format!("| recovery after SIGKILL, {k}, ms | {} |\n", num(&c["recovery_ms"][k])));
    }
    for k in ["control_only", "control_and_data"] {
        m.push_str(&format!(
            "| the same, {k}, seen by polling both APIs, ms | {} |\n",
            num(&c["recovery_polled_ms"][k])
        ));
    }
    m.push_str(&format!(
        "| control-plane floor, recovery's {} datagrams, ms | {} |\n| recovery (control and data) / floor | {} |\n| recovery (control only) / floor | {} |\n| control-plane floor, setup's {} datagrams, ms | {} |\n| setup / floor | {} |\n",
        num(&c["floor_datagrams_recovery"]),
        num(&c["floor_ms"]),
        num(&c["recovery_vs_floor"]),
        num(&c["recovery_control_only_vs_floor"]),
        c["floor_datagrams_setup"],
        num(&c["floor_setup_ms"]),
        num(&c["setup_vs_floor"]),
    ));
    m.push_str("\nPhases, ms from the (re)start of the initiating daemon (median):\n\n| phase (event) | setup | recovery, control only | recovery, control and data |\n|---|---|---|---|\n");
    let p = &c["phases"];
    for (k, what) in [
        ("api_up_ms", "API socket answers (a 1 ms connect probe; the store is read and the data plane attached or rebuilt before it)"),
        ("dataplane_rebuild_extra_ms", "data plane rebuilt: API-up of control and data minus API-up of control only"),
        ("first_recovery_started_ms", "first recovery SCCRQ sent (first `recovery-started`)"),
        ("last_recovery_started_ms", "last recovery SCCRQ sent (last `recovery-started`)"),
        ("first_tunnel_recovered_ms", "first SCCCN sent (first `tunnel-recovered`)"),
        ("last_tunnel_recovered_ms", "last SCCCN sent (last `tunnel-recovered`)"),
        ("first_session_confirmed_ms", "first FSR arrives (first `session-confirmed`)"),
        ("last_session_confirmed_ms", "last FSR arrives (last `session-confirmed`)"),
        ("first_tunnel_up_ms", "first tunnel up (`tunnel-up`)"),
        ("last_tunnel_up_ms", "last tunnel up (`tunnel-up`)"),
        ("first_session_up_ms", "first session up (`session-up`)"),
        ("last_session_up_ms", "last session up (`session-up`)"),
    ] {
        m.push_str(&format!(
            "| {what} | {} | {} | {} |\n",
            num(&p["setup"][k]),
            num(&p["control_only"][k]),
            num(&p["control_and_data"][k])
        ));
    }
    let total = c["sessions"].as_f64().unwrap_or(0.0);
    for (k, e) in [
        ("control_only", "events_session_confirmed"),
        ("control_and_data", "events_session_confirmed"),
        ("setup", "events_session_up"),
    ] {
        if let Some(n) = p[k][e].as_f64().filter(|n| *n < total) {
            m.push_str(&format!("\n{k}: the event stream lagged (the daemon queues 65,536 events per client): {n:.0} of {total:.0} session events seen; the first and last events are still right, the counts are not.\n"));
        }
    }
    m.push_str("\nEvents are the initiating daemon's own (`time_ms`, ms resolution), streamed by one `l2tp-ctl events --follow --json` subscribed when the API socket answers (the daemon keeps only its last 1,000 events for later clients) and parsed after the run; nothing polls for them. Recovery is from the restart to the last `session-confirmed` at either end, setup from the start to the last `session-up` at either end, and re-establishment from the SIGTERM to the last `session-up` at either end, each from both daemons' streams (the peer's is subscribed before the (re)start). The benchmark waits for those events by counting the streams' lines, then confirms the end state by polling the APIs (`status`, `failover status`); the polled figures (`recovery_polled_ms`, `setup_sessions_per_s_polled`) are upper bounds. Nothing is polled while the daemons work: a CLI process per poll would run on their CPU. The floor: 100-byte UDP datagrams, request and echo, one in flight per tunnel over each tunnel's address pair, all tunnels at once, between threads of the benchmark entered into the two namespaces (same CPU pinning), as many datagrams as the daemons' `stats` counted (`control.datagrams`, both ends) for the recovery and for the setup.\n\n");
}

/// Horizontal bar chart of the 64-byte data-plane figures.
fn svg(s: &Series) -> String {
    let rows: Vec<(String, f64)> = [
        ("test run: empty", "testrun.64.empty"),
        ("test run: encap", "testrun.64.encap"),
        ("test run: decap UDP/IPv4", "testrun.64.decap_udp4"),
        ("test run: decap IP/IPv6", "testrun.64.decap_ip6"),
        ("test run: decap, 65,536 sessions", "testrun.64.decap_udp4_65536"),
        ("live: redirect_map", "live.64.redirect"),
        ("live: our decap", "live.64.decap"),
        ("live: our encap", "live.64.encap"),
        ("live: bridge + VXLAN", "live.64.vxlan"),
    ]
    .iter()
    .map(|(l, k)| ((*l).to_owned(), s.median(k)))
    .collect();
    let max = rows.iter().map(|r| r.1).filter(|v| v.is_finite()).fold(1.0, f64::max);
    let (w, left, bar_h) = (760.0, 240.0, 22.0);
    let h = 50.0 + rows.len() as f64 * (bar_h + 8.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">ns per packet, 64-byte frames (median; log scale)</text>\n"
    );
    let scale = |v: f64| ((v.max(1.0)).ln() / max.ln().max(1.0)) * (w - left - 80.0);
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 35.0 + i as f64 * (bar_h + 8.0);
        let colour = if label.contains("VXLAN") || label.contains("redirect") || label.contains("empty") {
            "#999"
        } else {
            "#2a7"
        };
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>\n<rect x=\"{left}\" y=\"{y}\" width=\"{:.1}\" height=\"{bar_h}\" fill=\"{colour}\"/>\n<text x=\"{:.1}\" y=\"{}\">{:.1}</text>\n",
            left - 8.0,
            y + 15.0,
            scale(*v),
            left + scale(*v) + 6.0,
            y + 15.0,
            v
        ));
    }
    out.push_str("</svg>\n");
    out
}
