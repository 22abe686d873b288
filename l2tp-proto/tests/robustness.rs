//! The randomized stand-in for the `cargo fuzz` targets under the stable
//! toolchain: each fuzz entry point gets random and mutated inputs for a
//! bounded time (seeded, so a failure prints a reproducible seed).

use std::time::{Duration, Instant};

use l2tp_proto::fuzzing;

/// Per-target time budget; override with L2TP_FUZZ_SECS.
fn budget() -> Duration {
    let secs = std::env::var("L2TP_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid seeds: v2 SCCRQ with failover capability, v3 ICRQ, hidden AVP,
/// v3 over IP HELLO, data headers.
const SEEDS: &[&[u8]] = &[
    b"\xc8\x02\x00\x2a\x00\x00\x00\x00\x00\x00\x00\x00\x80\x08\x00\x00\x00\x00\x00\x01\x80\x08\x00\x00\x00\x02\x01\x00\x80\x07\x00\x00\x00\x07\x61\x00\x0c\x00\x00\x00\x4c\x00\x03\x00\x00\x03\xe8",
    b"\xc8\x03\x00\x28\x00\x00\x00\xc8\x00\x01\x00\x02\x80\x08\x00\x00\x00\x00\x00\x0c\x80\x0a\x00\x00\x00\x3f\x00\x00\x00\x11\x80\x0a\x00\x00\x00\x40\x00\x00\x00\x22",
    b"\xc8\x02\x00\x2c\x00\x07\x00\x00\x00\x01\x00\x02\x80\x08\x00\x00\x00\x00\x00\x0a\x80\x0a\x00\x00\x00\x24\x01\x02\x03\x04\xc0\x0a\x00\x00\x00\x0e\x11\x22\x33\x44",
    b"\x00\x00\x00\x00\xc8\x03\x00\x14\x00\x00\x00\xc8\x00\x01\x00\x02\x80\x08\x00\x00\x00\x00\x00\x06",
    b"\x4b\x02\x00\x12\x00\x07\x00\x09\x00\x01\x00\x02\x00\x02\x00\x00\xaa\xbb",
    b"\x00\x03\x00\x00\x00\x00\x12\x34\xca\xfe\xf0\x0d\x40\x00\x00\x05\xaa\xbb",
];

fn input(rng: &mut XorShift) -> Vec<u8> {
    match rng.below(3) {
        // Pure noise.
        0 => (0..rng.below(128)).map(|_| rng.next() as u8).collect(),
        // A seed with a few bytes changed (length fields included).
        1 => {
            let mut v = SEEDS[rng.below(SEEDS.len())].to_vec();
            for _ in 0..=rng.below(4) {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            v
        }
        // A seed cut short or extended.
        _ => {
            let mut v = SEEDS[rng.below(SEEDS.len())].to_vec();
            if rng.below(2) == 0 {
                v.truncate(rng.below(v.len() + 1));
            } else {
                v.extend((0..rng.below(16)).map(|_| rng.next() as u8));
            }
            v
        }
    }
}

fn run(name: &str, target: fn(&[u8])) {
    let seed = std::env::var("L2TP_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9E37_79B9_7F4A_7C15u64);
    let mut rng = XorShift(seed);
    let start = Instant::now();
    let mut n = 0u64;
    // Every truncation of every seed, then random inputs until the budget.
    for s in SEEDS {
        for len in 0..=s.len() {
            target(&s[..len]);
        }
    }
    while start.elapsed() < budget() {
        for _ in 0..256 {
            let state = rng.0;
            let data = input(&mut rng);
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "{name}: panic on input {data:02x?} (L2TP_FUZZ_SEED={state})");
            n += 1;
        }
    }
    eprintln!("{name}: {n} inputs in {:?}", start.elapsed());
    assert!(n > 1000, "{name}: too few inputs ({n}) to mean anything");
}

#[test]
fn fuzz_control_messages() {
    run("control", fuzzing::control);
}

#[test]
fn fuzz_avps() {
    run("avps", fuzzing::avps);
}

#[test]
fn fuzz_data_headers() {
    run("data_header", fuzzing::data_header);
}
