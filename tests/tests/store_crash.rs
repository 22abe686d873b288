//! The state store survives SIGKILL at any point: after each kill it opens,
//! every record reads back whole, and everything whose commit had returned
//! is there (removals included).

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use l2tp_ctl::store::Store;
use l2tp_tests::daemon::TempDir;
use rand::{Rng, SeedableRng};

#[test]
fn store_survives_sigkill_at_random_points() {
    let dir = TempDir::new("store-crash").expect("dir");
    let mut rng = rand::rngs::StdRng::seed_from_u64(4951);
    let mut next = 0u32;
    for round in 0..12 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-writer"))
            .arg(dir.path())
            .arg(next.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                match line.ok().and_then(|l| l.parse::<u32>().ok()) {
                    Some(i) => last = Some(i),
                    None => break,
                }
            }
            last
        });
        // Kill somewhere between store creation and a few hundred commits.
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..150_000)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let acknowledged = reader.join().expect("reader");

        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("round {round}: store unreadable: {e}"));
        let tunnels = store.tunnels().unwrap_or_else(|e| panic!("round {round}: {e}"));
        if let Some(last) = acknowledged {
            for i in 0..=last {
                let has = |j: u32| tunnels.iter().any(|t| t.local_id == j);
                // Tunnel i is removed by the step that writes i + 5; when
                // that step was cut short by the kill (after the last
                // print), either state is right.
                if i % 10 == 4 && i + 5 == last + 1 {
                    continue;
                }
                let removed = i % 10 == 4 && i + 5 <= last;
                assert_eq!(has(i), !removed, "round {round}: tunnel {i} (acknowledged up to {last})");
                if !removed {
                    let s = store.sessions(i).expect("sessions");
                    assert_eq!(s.len(), 1, "round {round}: sessions of {i}");
                    assert_eq!(s[0].rx_cookie, i.to_be_bytes().to_vec());
                }
            }
            next = last + 1;
        }
        // Records beyond the acknowledged ones may exist (the kill came
        // after the commit, before the print), but only whole.
        for t in &tunnels {
            assert_eq!(t.name, format!("t{}", t.local_id));
        }
    }
    assert!(next > 0, "the writer never committed anything");
}
