//! Drop tracing (issue 16): `l2tp-ctl dataplane trace` on a pinned data
//! plane prints one line per frame the programs drop or pass up
//! unexpectedly, with the right reason, session and Ns/Nr; honours its
//! session filter; stops by itself; and the kernel stops tracing at the
//! deadline even when the tracer is killed. Frames go in by
//! BPF_PROG_TEST_RUN on the pinned programs.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use l2tp_ctl::dataplane::{Cookie, Pinned, Role};
use l2tp_tests::{daemon::ctl_bin, xdp::*, PinDir};
use serde_json::Value;

const ID: u32 = 0x777;
const S: u32 = 0x4000_0000;
const COOKIE: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

/// Starts a trace of the pins in `dir` and returns once it is armed.
fn start_trace(dir: &std::path::Path, args: &[&str]) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = Command::new(ctl_bin())
        .args(["dataplane", "trace", "--json", "--pin-dir"])
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("l2tp-ctl dataplane trace");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    err.read_line(&mut first).expect("stderr line");
    assert!(first.starts_with("tracing "), "the trace did not start: {first}");
    let rest = std::thread::spawn(move || {
        let mut s = first;
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    (child, rest)
}

/// Waits for the tracer to exit by itself (bounded, then killed) and
/// returns its JSON lines and its stderr.
fn finish(mut child: Child, err: std::thread::JoinHandle<String>, within: Duration) -> (Vec<Value>, String) {
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the trace did not stop by itself within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out).expect("stdout");
    let err = err.join().expect("stderr");
    assert!(status.success(), "trace failed: {status}\n{err}");
    let lines = out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect();
    (lines, err)
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn wrong_cookie_and_out_of_sequence_frames_are_traced_with_their_reason_and_tracing_stops_by_itself() {
    let pins = PinDir::new("trace");
    let dp = Pinned::open_or_create(pins.path()).expect("data plane");
    let mut table = dp.sessions().expect("session maps");
    let mut p = params(ID, UDP, false);
    (p.sublayer, p.sequencing) = (true, true);
    p.rx_cookie = Cookie::new(&COOKIE).expect("cookie");
    p.tx_cookie = p.rx_cookie;
    table.add(&p).expect("session");
    let mut uplink = dp.program(Role::Uplink).expect("pinned uplink program");
    let frame = |ns: u32, cookie: &[u8]| wire_in(UDP, false, &l2tp(ID, cookie, Some(S | ns)), &inner());
    let send = |prog: &mut aya::programs::Xdp, f: &[u8]| test_run(prog, f).0;

    // Before any trace: a drop leaves nothing for the next one.
    assert_eq!(send(&mut uplink, &frame(1, &[1, 2, 3, 4])), XDP_DROP);

    let (child, err) = start_trace(pins.path(), &["--seconds", "2"]);
    assert_eq!(send(&mut uplink, &frame(100, &COOKIE)), XDP_REDIRECT, "in sequence: forwarded, not traced");
    assert_eq!(send(&mut uplink, &frame(101, &COOKIE)), XDP_REDIRECT);
    assert_eq!(send(&mut uplink, &frame(102, &[9, 9, 9, 9])), XDP_DROP, "wrong cookie");
    assert_eq!(send(&mut uplink, &frame(50, &COOKIE)), XDP_DROP, "older than Nr");
    assert_eq!(send(&mut uplink, &frame(101, &COOKIE)), XDP_DROP, "the last one again");
    let unknown = wire_in(UDP, false, &l2tp(ID + 1, &COOKIE, Some(S)), &inner());
    assert_eq!(send(&mut uplink, &unknown), XDP_PASS, "not our session: the kernel's");
    let (lines, stderr) = finish(child, err, Duration::from_secs(15));
    let got: Vec<(String, String, u64, u64, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["reason"].as_str().unwrap_or("?").to_owned(),
                l["action"].as_str().unwrap_or("?").to_owned(),
                l["session"].as_u64().unwrap_or(0),
                l["ns"].as_u64().unwrap_or(0),
                l["nr"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let id = u64::from(ID);
    let want = vec![
        ("cookie-mismatch".to_owned(), "drop".to_owned(), id, 0, 0),
        ("out-of-sequence".to_owned(), "drop".to_owned(), id, 50, 102),
        ("duplicate".to_owned(), "drop".to_owned(), id, 101, 102),
        ("unknown-session".to_owned(), "pass".to_owned(), id + 1, 0, 0),
    ];
    assert_eq!(got, want, "traced lines\n{stderr}");
    assert!(lines.iter().all(|l| l["program"] == "uplink"), "{lines:?}");
    assert!(stderr.contains("4 frame(s) traced"), "{stderr}");

    // The session filter: another session's trace sees none of ours.
    let (child, err) = start_trace(pins.path(), &["--seconds", "1", "--session", &(ID + 5).to_string()]);
    assert_eq!(send(&mut uplink, &frame(103, &[9, 9, 9, 9])), XDP_DROP);
    let (lines, _) = finish(child, err, Duration::from_secs(15));
    assert!(lines.is_empty(), "filtered out: {lines:?}");

    // A tracer killed outright: the kernel's deadline ends tracing, and a
    // second trace is refused until then, not after.
    let (mut child, _err) = start_trace(pins.path(), &["--seconds", "1"]);
    child.kill().expect("kill");
    child.wait().expect("wait");
    let refused = Command::new(ctl_bin())
        .args(["dataplane", "trace", "--seconds", "1", "--pin-dir"])
        .arg(pins.path())
        .output()
        .expect("l2tp-ctl");
    assert!(!refused.status.success(), "a second trace while one runs");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another trace is running"), "{refused:?}");
    std::thread::sleep(Duration::from_millis(1200));
    let (child, err) = start_trace(pins.path(), &["--seconds", "1"]);
    let (lines, _) = finish(child, err, Duration::from_secs(15));
    assert!(lines.is_empty(), "{lines:?}");
    dp.destroy().expect("pins removed");
}
