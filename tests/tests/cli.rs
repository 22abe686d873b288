//! The command-line conventions of `l2tp-ctl`: `--socket` and `--json`
//! before or after the subcommand, the documented exit codes (0, 1 for an
//! operational failure, 2 for bad usage or configuration), configuration
//! errors that name the key path and line in words, a missing file said
//! once, man pages, and `events --follow --json` one object per line.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Output, Stdio},
    time::Duration,
};

use l2tp_tests::{
    daemon::{ctl_bin, Config, Daemon, TempDir, Tunnel},
    topology::{self, TwoSites},
};
use serde_json::Value;

fn ctl(args: &[&str]) -> Output {
    Command::new(ctl_bin()).args(args).env_remove("L2TP_CTL_SOCKET").output().expect("l2tp-ctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn socket_and_json_are_accepted_before_or_after_the_subcommand() {
    let dir = TempDir::new("cli").expect("dir");
    let sock = dir.path().join("none.sock");
    let s = sock.to_str().expect("utf-8");
    for args in [
        vec!["--socket", s, "tunnel", "list"],
        vec!["tunnel", "list", "--socket", s],
        vec!["tunnel", "--socket", s, "list"],
        vec!["--json", "--socket", s, "status"],
        vec!["status", "--json", "--socket", s],
        vec!["--socket", s, "session", "list", "--tunnel", "t", "--json"],
        vec!["--json", "failover", "status", "--socket", s],
        vec!["--socket", s, "--json", "events", "--follow"],
    ] {
        let o = ctl(&args);
        // Parsed (not a usage error, 2): it went for the daemon at `sock`
        // and said in one line that none runs there (an operational
        // failure, 1).
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{args:?}: {e}");
        assert!(e.contains("the daemon is not running") && e.contains(s), "{args:?}: {e}");
    }
    // The environment names the socket too.
    let o = Command::new(ctl_bin()).args(["status"]).env("L2TP_CTL_SOCKET", &sock).output().expect("l2tp-ctl");
    assert!(stderr(&o).contains(s), "{}", stderr(&o));
}

#[test]
fn exit_codes_are_documented_and_usage_errors_exit_2() {
    let help = ctl(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Exit status:") && text.contains("1  operational failure"), "{text}");
    assert!(text.contains("2  bad usage or configuration"), "{text}");
    assert!(!text.contains("\n  man "), "the man-page generator is hidden: {text}");
    for args in [&["bogus"][..], &["tunnel", "list", "--bogus"], &["tunnel", "add", "--name", "x"], &[]] {
        assert_eq!(ctl(args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn config_errors_name_the_key_path_and_line_and_exit_2() {
    let dir = TempDir::new("cli-config").expect("dir");
    for (name, text, want) in [
        (
            "type.toml",
            "[global]\nmax_tunnels = \"x\"\n",
            "global.max_tunnels (line 2): expected a whole number, got the string \"x\"",
        ),
        (
            "unknown.toml",
            "[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\nhelo_interval = 5\n",
            "tunnel[0].helo_interval (line 4): unknown key; the keys here are name, peer,",
        ),
        ("value.toml", "[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\nversion = 4\n", "tunnel[0].version: "),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let p = path.to_str().expect("utf-8");
        for args in [vec!["config", "check", p], vec!["--json", "config", "check", p]] {
            let o = ctl(&args);
            assert_eq!(o.status.code(), Some(2), "{args:?}");
            let e = stderr(&o);
            assert!(e.starts_with(&format!("l2tp-ctl: {p}: {want}")), "want {want:?}\n got {e:?}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
    // A missing file: said once, exit 2.
    let missing = dir.path().join("missing.toml");
    let o = ctl(&["config", "check", missing.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), format!("l2tp-ctl: {}: no such file\n", missing.display()));
    // The daemon says the same at start.
    let o = ctl(&["daemon", "--config", missing.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).matches("no such file").count(), 1, "{}", stderr(&o));
}

#[test]
fn config_check_warns_about_risky_values_and_still_exits_0() {
    let dir = TempDir::new("cli-warn").expect("dir");
    let path = dir.path().join("risky.toml");
    std::fs::write(
        &path,
        "[global.retransmit]\nmax_ms = 4000\n[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\n\
         [tunnel.failover]\nrecovery_time_ms = 2000\n",
    )
    .expect("write");
    let p = path.to_str().expect("utf-8");
    let o = ctl(&["config", "check", p]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("warning") && e.contains("global.retransmit.max_ms = 4000"), "{e}");
    assert!(e.contains("tunnel[0].failover.recovery_time_ms = 2000: shorter than the control channel timeout"), "{e}");
    let o = ctl(&["config", "check", p, "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!((v["valid"].as_bool(), v["tunnels"].as_u64()), (Some(true), Some(1)), "{v:#}");
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(2), "{v:#}");
}

#[test]
fn man_pages_are_written_for_the_command_and_its_subcommands() {
    let dir = TempDir::new("cli-man").expect("dir");
    let o = ctl(&["man", dir.path().to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for page in ["l2tp-ctl.1", "l2tp-ctl-tunnel.1", "l2tp-ctl-tunnel-add.1", "l2tp-ctl-config-check.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page} is a man page: {text}");
    }
    let main = std::fs::read_to_string(dir.path().join("l2tp-ctl.1")).expect("l2tp-ctl.1");
    assert!(main.contains("Exit status") && main.contains("\\-\\-socket"), "{main}");
    assert!(!dir.path().join("l2tp-ctl-man.1").exists(), "the generator documents not itself");
}

#[test]
#[ignore = "privileged: needs root and network namespaces; run by `cargo xtask test`"]
fn events_follow_json_prints_one_object_per_line() {
    let t = TwoSites::new().expect("topology");
    let cfg = |me: &str, peer: &str, initiate: bool| {
        Config { router_id: Some(me.into()), reconnect_interval: Some(1), ..Config::new(me) }
            .tunnel(Tunnel::new("t", peer, initiate))
            .toml()
    };
    let _b = Daemon::start(&t.pe_b, "pe-b", &cfg(topology::PE_B_UP, topology::PE_A_UP, false)).expect("daemon b");
    let a = Daemon::start(&t.pe_a, "pe-a", &cfg(topology::PE_A_UP, topology::PE_B_UP, true)).expect("daemon a");
    a.wait_json(&["tunnel", "list"], "tunnel up", Duration::from_secs(15), |v| v[0]["state"] == "established")
        .expect("tunnel up");
    // Global flags before the subcommand, as an operator types them.
    let mut follow = Command::new(ctl_bin())
        .arg("--json")
        .arg("--socket")
        .arg(a.socket())
        .args(["events", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("events --follow");
    // Lines as they arrive, read by a thread: the follower must print each
    // burst when it comes, not when its buffer fills or it exits.
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10));
    // A new event while following: deleting the tunnel.
    a.ctl(&["tunnel", "delete", "t"]).expect("tunnel delete");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut live = None;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("\"tunnel-down\"") => {
                live = Some(l);
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let first = first.expect("a kept event printed while following");
    let v: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("one object per line ({e}): {first}"));
    assert!(v.is_object() && v["event"].is_string() && v["time_ms"].is_u64(), "{first}");
    let live = live.expect("the tunnel-down of a delete printed while following");
    let v: Value = serde_json::from_str(&live).unwrap_or_else(|e| panic!("one object per line ({e}): {live}"));
    // A tunnel we closed is still named in its last events.
    assert_eq!((&v["event"], &v["tunnel"]), (&Value::from("tunnel-down"), &Value::from("t")), "{live}");
    // Without --follow: the kept events, each line an object, then exit 0.
    let out = a.ctl(&["events", "--json"]).expect("events --json");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() >= 1, "{text}");
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["event"].is_string(), "{l}");
    }
    assert!(text.lines().any(|l| l.contains("\"tunnel-up\"")), "{text}");
}
