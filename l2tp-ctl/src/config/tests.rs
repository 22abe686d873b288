use std::time::Duration;

use proptest::strategy::Strategy;

use super::*;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("t.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn minimal_file_gets_the_documented_defaults() {
    let c = parse("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\n").expect("valid");
    let t = &c.tunnels[0];
    assert_eq!((t.version, t.port, t.encapsulation, t.initiate), (3, 1701, Encapsulation::Udp, true));
    assert_eq!((c.global.hello_interval, c.global.receive_window), (60, 16));
    assert_eq!(t.failover, Failover::default());
    assert!(c.dataplane.enabled && c.global.listen_ip);
    assert_eq!(c.global.commit_delay_ms, 20);
}

#[test]
fn the_commit_delay_is_bounded() {
    let delay = |v: &str| parse(&format!("[global]\ncommit_delay_ms = {v}\n"));
    assert_eq!(delay("0").expect("commit at once").global.commit_delay_ms, 0);
    assert_eq!(delay("60000").expect("the longest").global.commit_delay_ms, 60_000);
    let e = delay("60001").expect_err("too long");
    assert!(e.contains("global.commit_delay_ms") && e.contains("at most 60000"), "{e}");
    assert!(delay("-1").is_err());
}

#[test]
fn vlan_circuits_share_an_interface_and_are_checked() {
    let pw = |name: &str, vlan: &str| {
        format!("[[tunnel.session]]\nname = \"{name}\"\ninterface = \"ac0\"\npw_type = \"ethernet-vlan\"\n{vlan}\n")
    };
    let head = "[dataplane]\nuplink = \"up0\"\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\n";
    let c = parse(&format!("{head}{}{}", pw("a", "vlan = 10"), pw("b", "vlan = 11"))).expect("two VLANs of ac0");
    assert_eq!(c.tunnels[0].sessions[1].circuit(), ("ac0", 11));
    for (body, key) in [
        (format!("{}{}", pw("a", "vlan = 10"), pw("b", "vlan = 10")), "tunnel[0].session[1].vlan"),
        (pw("a", "vlan = 4095"), "tunnel[0].session[0].vlan"),
        (pw("a", "vlan = 0"), "tunnel[0].session[0].vlan"),
        ("[[tunnel.session]]\nname = \"a\"\ninterface = \"ac0\"\nvlan = 5\n".into(), "tunnel[0].session[0].vlan"),
    ] {
        let e = parse(&format!("{head}{body}")).expect_err("invalid");
        assert!(e.contains(key), "{key}: {e}");
    }
}

#[test]
fn per_tunnel_timers_override_the_global_ones_key_by_key() {
    let c = parse(
        "[global]\nhello_interval = 30\nreceive_window = 32\n[global.retransmit]\nretries = 7\n\
         [[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\nhello_interval = 5\n[tunnel.retransmit]\ninitial_ms = 250\n\
         [[tunnel]]\nname = \"b\"\npeer = \"198.18.0.3\"\n",
    )
    .expect("valid");
    let a = c.tunnels[0].timers(&c.global);
    assert_eq!(a.hello_interval, Duration::from_secs(5));
    assert_eq!(a.channel.retransmit_initial, Duration::from_millis(250));
    assert_eq!((a.channel.max_retries, a.channel.receive_window), (7, 32), "the rest from [global]");
    let b = c.tunnels[1].timers(&c.global);
    assert_eq!((b.hello_interval, b.channel.retransmit_initial), (Duration::from_secs(30), Duration::from_secs(1)));
    assert_eq!(c.tunnels[0].tunnel_params(None, &c.global).timers, Some(a));
    for (extra, key) in [
        ("hello_interval = 0\n", "tunnel[0].hello_interval"),
        ("receive_window = 0\n", "tunnel[0].receive_window"),
        ("[tunnel.retransmit]\ninitial_ms = 20000\n", "tunnel[0].retransmit"),
        ("[tunnel.retransmit]\nretrys = 3\n", "retrys"),
    ] {
        let e = parse(&format!("[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\n{extra}")).expect_err(key);
        assert!(e.contains(key), "{key}: {e}");
    }
}

#[test]
fn retransmit_cap_under_8_s_is_legal_and_warned_about() {
    let c = parse(
        "[global.retransmit]\nmax_ms = 4000\n[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\n\
         [tunnel.retransmit]\nmax_ms = 2000\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.3\"\n",
    )
    .expect("legal");
    assert_eq!(c.tunnels[0].timers(&c.global).channel.retransmit_cap, Duration::from_millis(2000), "honoured");
    assert_eq!(c.tunnels[1].timers(&c.global).channel.retransmit_cap, Duration::from_millis(4000));
    let w: Vec<String> = c.warnings().into_iter().filter(|w| !w.contains("recovery_time_ms")).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("global.retransmit.max_ms = 4000") && w[0].contains("8000"), "{w:?}");
    assert!(w[1].starts_with("tunnel[0].retransmit.max_ms = 2000"), "{w:?}");
    let quiet = parse(
        "[global.retransmit]\nmax_ms = 8000\n[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\n\
         [tunnel.failover]\nrecovery_time_ms = 60000\n",
    )
    .expect("legal");
    assert!(quiet.warnings().is_empty(), "{:?}", quiet.warnings());
    assert!(parse("").expect("defaults").warnings().is_empty(), "the default cap is not warned about");
}

#[test]
fn one_mac_parser() {
    assert_eq!(parse_mac("02:00:00:00:0a:FF"), Ok([2, 0, 0, 0, 0x0a, 0xff]));
    for bad in
        ["", "02:00:00:00:00", "02:00:00:00:00:01:02", "2:00:00:00:00:01", "+2:00:00:00:00:01", "zz:00:00:00:00:01"]
    {
        assert!(parse_mac(bad).is_err(), "{bad}");
    }
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e =
        parse("[global]\nhost_name = \"a\"\n\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nhelo_interval = 5\n")
            .expect_err("unknown key");
    assert!(e.contains("helo_interval") && e.contains("line 7"), "{e}");
}

#[test]
fn invalid_values_name_the_key() {
    for (text, key) in [
        ("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nversion = 4\n", "tunnel[0].version"),
        ("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nversion = 2\nencapsulation = \"ip\"\n", "encapsulation"),
        ("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nhide_avps = true\n", "tunnel[0].hide_avps"),
        (
            "[dataplane]\nuplink = \"up0\"\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\n[[tunnel.session]]\nname = \"p\"\ninterface = \"ac0\"\ncookie_len = 3\n",
            "tunnel[0].session[0].cookie_len",
        ),
        (
            "[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.3\"\n",
            "tunnel[1].name",
        ),
        (
            "[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\n[[tunnel.session]]\nname = \"p\"\ninterface = \"ac0\"\n",
            "tunnel[0].uplink",
        ),
        ("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nsecret_file = \"/nonexistent/x\"\n", "secret_file"),
    ] {
        let e = parse(text).expect_err(text);
        assert!(e.contains(key), "{key}: {e}");
    }
    let e = parse("[[tunnel]]\nname = \"b\"\npeer = \"not-an-address\"\n").expect_err("bad address");
    assert!(e.contains("line 3"), "{e}");
}

#[test]
fn secrets_never_show_in_debug() {
    let c = parse("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nsecret = \"hunter2\"\n").expect("valid");
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn the_shipped_example_is_valid() {
    let dir = std::env::temp_dir().join(format!("l2tp-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for f in ["pe-b.secret", "lns.secret"] {
        std::fs::write(dir.join(f), "example-secret\n").expect("secret");
    }
    let text = include_str!("../../../contrib/l2tp-ctl.toml").replace("/etc/l2tp-ctl/", &format!("{}/", dir.display()));
    let c = parse(&text);
    std::fs::remove_dir_all(&dir).expect("cleanup");
    let c = c.expect("contrib/l2tp-ctl.toml");
    assert_eq!(c.tunnels.len(), 3);
    assert_eq!(c.tunnels[0].sessions.len(), 2);
}

#[test]
fn recovery_time_shorter_than_the_control_timeout_is_warned_about() {
    // Defaults: 1 s doubling to 8 s, 5 retransmissions: 1+2+4+8+8+8 s.
    assert_eq!(warnings::control_timeout(&l2tp_proto::channel::ChannelConfig::default()), Duration::from_secs(31));
    let tunnel = |extra: &str| format!("[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\n{extra}");
    let c = parse(&tunnel("[tunnel.failover]\nrecovery_time_ms = 2500\n")).expect("legal");
    let w = c.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("tunnel[0].failover.recovery_time_ms = 2500") && w[0].contains("31000 ms"), "{w:?}");
    // The default Recovery Time (3 s, for peers that wait it after their
    // timeout, as this daemon does) is not warned about.
    assert!(parse(&tunnel("")).expect("legal").warnings().is_empty());
    // The tunnel's own timers count: 200 ms doubling to 400 ms, twice.
    let fast = "[tunnel.retransmit]\ninitial_ms = 200\nmax_ms = 8000\nretries = 2\n[tunnel.failover]\nrecovery_time_ms = 3000\n";
    assert!(parse(&tunnel(fast)).expect("legal").warnings().is_empty(), "1.4 s < 3 s");
    // Without control channel failover there is no Recovery Time to speak of.
    let off = "[tunnel.failover]\ncontrol = false\nrecovery_time_ms = 0\n";
    assert!(parse(&tunnel(off)).expect("legal").warnings().is_empty());
}

#[test]
fn type_errors_name_the_key_path_and_line_in_words() {
    for (text, want) in [
        ("[global]\nmax_tunnels = \"x\"\n", "global.max_tunnels (line 2): expected a whole number, got the string \"x\""),
        ("[global]\nlisten_ip = \"yes\"\n", "global.listen_ip (line 2): expected true or false, got the string \"yes\""),
        ("[global]\nreceive_window = 70000\n", "global.receive_window (line 2): expected a whole number from 0 to 65535, got 70000"),
        ("[global]\nlisten = [\"198.18.0.1\"]\n", "global.listen[0] (line 2): expected an address and port"),
        (
            "[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.3\"\nencapsulation = \"tcp\"\n",
            "tunnel[1].encapsulation (line 7): expected \"udp\" or \"ip\", got \"tcp\"",
        ),
        ("[[tunnel]]\nname = \"a\"\n", "tunnel[0] (line 1): the key peer is missing"),
        ("[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\nhelo = 1\n", "tunnel[0].helo (line 4): unknown key; the keys here are name, peer"),
        ("[global\n", "line 1: "),
    ] {
        let e = parse(text).expect_err(text);
        assert!(e.starts_with(&format!("t.toml: {want}")), "want {want:?}\n got {e:?}");
        if !want.starts_with("line ") {
            assert!(!e.contains("usize") && !e.contains("u16") && !e.contains('`'), "serde's words: {e}");
        }
    }
}

#[test]
fn a_missing_file_is_said_once() {
    let e = Config::load(Path::new("/nonexistent/l2tp-ctl.toml")).expect_err("missing");
    // `{:#}` prints the error chain, as `l2tp-ctl` does.
    let shown = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(shown, "/nonexistent/l2tp-ctl.toml: no such file");
}

/// `fast` reads a file exactly as `toml` does, or leaves it to `toml`.
fn fast_agrees(text: &str) -> Option<toml::Table> {
    let fast = fast::parse(text).map(fast::Tbl::into_table);
    match (&fast, toml::from_str::<toml::Table>(text)) {
        (Some(f), Ok(t)) => assert_eq!(f, &t, "{text:?}"),
        (Some(f), Err(e)) => panic!("fast read a file toml refuses ({e}): {text:?} as {f:?}"),
        (None, _) => {}
    }
    fast
}

/// A large file of the benchmarks' shape: what the fast reader is for.
fn many_sessions(tunnels: usize, sessions: usize) -> String {
    let mut s = String::from("# many pseudowires\n[global]\nlisten = [\"198.18.0.1:1701\", \"[2001:2::1]:1701\"]\nlisten_ip = false\n\n[dataplane]\nuplink = \"up0\"\n");
    for t in 0..tunnels {
        s.push_str(&format!(
            "\n[[tunnel]]\nname = \"t{t}\"\npeer = \"198.18.1.{t}\"\t# a peer\r\nsecret = \"s3cr=t #{t}\"\n[tunnel.failover]\nrecovery_time_ms = 10000\nrecovery_peers = [ \"198.18.2.1\" , ]\n"
        ));
        for n in 0..sessions {
            s.push_str(&format!(
                "[[tunnel.session]]\nname = \"s{n}\"\ninterface = \"c{t}\"\npw_type = \"ethernet-vlan\"\nvlan = {}\nsequencing = true\nresync_n = +5\n",
                n + 1
            ));
        }
    }
    s
}

#[test]
fn fast_reader_agrees_with_toml() {
    let big = many_sessions(3, 4);
    let example = include_str!("../../../contrib/l2tp-ctl.toml");
    for plain in [big.as_str(), example, "", "# only a comment\n", "a = []\nb = [1, -2, true, \"x\"]\n"] {
        assert!(fast_agrees(plain).is_some(), "the plain shape is read fast: {plain:?}");
    }
    let c = parse(&big).expect("valid");
    let via_fast: Config = serde::Deserialize::deserialize(fast::parse(&big).expect("plain")).expect("a config");
    assert_eq!(via_fast, toml::from_str::<Config>(&big).expect("toml"), "the same configuration either way");
    let via_fast: Config = serde::Deserialize::deserialize(fast::parse(example).expect("plain")).expect("a config");
    assert_eq!(via_fast, toml::from_str::<Config>(example).expect("toml"));
    assert_eq!((c.tunnels.len(), c.tunnels[2].sessions[3].vlan), (3, Some(4)));
    assert_eq!(c.tunnels[1].secret, Some(Secret::new("s3cr=t #1")));
    // Beyond the plain shape, or not TOML at all: left to `toml`.
    for other in [
        "a = \"x\\ty\"\n",
        "a = 'literal'\n",
        "a = \"\"\"\nmulti\"\"\"\n",
        "a = 1.5\n",
        "a = 1_000\n",
        "a = 0x10\n",
        "a = 012\n",
        "a = 1979-05-27\n",
        "a = { b = 1 }\n",
        "a.b = 1\n",
        "\"a\" = 1\n",
        "[ a ]\n",
        "a = [\n1]\n",
        "a = [[1], [2]]\n",
        "a = 1\na = 2\n",
        "[a]\n[a]\n",
        "[[a]]\n[a]\n",
        "[a]\n[[a]]\n",
        "a = 1\n[a]\n",
        "a = 1\n[a.b]\n",
        "[a]\nb = 1\n[a.b]\n",
        "a = 1 2\n",
        "a = truex\n",
        "a =\n",
        "= 1\n",
        "[a\n",
        "a = \"x\n",
        "a = \"\u{1}\"\n",
        "# \u{7f}\n",
        "\u{feff}a = 1\n",
        "a = 1\r",
        "\r",
        "a = 1\n\r",
    ] {
        assert!(fast_agrees(other).is_none(), "left to toml: {other:?}");
    }
    // Tables given only as prefixes may get their own header later.
    assert!(fast_agrees("[a.b]\nx = 1\n[a]\ny = 2\n[[t]]\n[t.u]\nz = 3\n[[t]]\n[t.u]\nz = 4\n").is_some());
}

proptest::proptest! {
    /// Files made of lines from a small grammar of valid and invalid TOML,
    /// mixed: whatever fast reads, toml reads the same; what toml refuses,
    /// fast never reads.
    #[test]
    fn fast_reader_never_disagrees_with_toml(lines in proptest::collection::vec(proptest::prop_oneof![
        proptest::sample::select(vec![
            "[a]", "[b]", "[a.b]", "[[t]]", "[[t.s]]", "[t.u]", "[[a]]", "[ a ]", "[a]]", "[[t]", "[a.]", "[.a]",
            "# note", "", "  ", "\t# x", "x = 1", "x = 2", "y = \"s\"", "y = \"\"", "z = true", "z = false",
            "w = [1, 2]", "w = []", "w = [\"a\",]", "x = -0", "x = +7", "x = 00", "x = 1.0", "x = \"a\\\"b\"",
            "x = 'a'", "x.y = 1", "x = 1 # c", "x=1", "x = 1,", "x = [1 2]", "x = [1,,2]", "x = 9223372036854775808",
            "x = -9223372036854775808", "x = \"#\"", "y = \"\"\"\"", "[x]", "[y]", "[z]", "[w]",
        ]).prop_map(str::to_owned),
        "[a-z]{1,2} = [0-9]{1,3}",
        "\\[[a-z]{1,2}\\]",
    ], 0..12), crlf in proptest::bool::ANY, cr_at_end in proptest::bool::ANY) {
        let mut text = lines.join(if crlf { "\r\n" } else { "\n" });
        if cr_at_end {
            text.push('\r');
        }
        fast_agrees(&text);
        if toml::from_str::<toml::Table>(&text).is_err() {
            proptest::prop_assert!(fast::parse(&text).is_none(), "{:?}", text);
        }
    }
}
