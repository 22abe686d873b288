//! Regression guard on the size of the XDP programs: the verifier's
//! processed-instruction count and the JIT image size of every program in
//! the release object, against `tests/verifier-budget.json`. Growth of more
//! than 10% fails; the numbers are deterministic for a given object and
//! kernel, so this cannot flake.

use std::{collections::BTreeMap, path::PathBuf};

use l2tp_ctl::dataplane::{Loaded, EBPF_OBJECT};

const ALLOWED_GROWTH: f64 = 0.10;
const UPDATE_ENV: &str = "L2TP_UPDATE_VERIFIER_BUDGET";

fn budget_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("verifier-budget.json")
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn xdp_programs_stay_within_the_recorded_verifier_and_jit_budget() {
    let mut dp = Loaded::load(EBPF_OBJECT).expect("release object loads");
    let mut now: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for name in dp.program_names() {
        let (insns, jit) = dp.verifier_cost(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(insns > 0 && jit > 0, "{name}: the kernel reported no verifier or JIT figures");
        now.insert(
            name,
            BTreeMap::from([("verified_insns".into(), u64::from(insns)), ("jit_bytes".into(), u64::from(jit))]),
        );
    }
    let path = budget_file();
    if std::env::var_os(UPDATE_ENV).is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&now).expect("json") + "\n").expect("write budget");
        eprintln!("recorded {}", path.display());
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let recorded: BTreeMap<String, BTreeMap<String, u64>> = serde_json::from_str(&text).expect("budget file parses");
    let how = format!(
        "if the growth is intended, record the new figures with `{UPDATE_ENV}=1 cargo nextest run -p l2tp-tests \
         --test verifier_budget --run-ignored all` (or `cargo xtask test` with that variable set) and commit {}",
        path.display()
    );
    let mut failures = Vec::new();
    for (prog, figures) in &now {
        let Some(before) = recorded.get(prog) else {
            failures.push(format!("{prog}: not in the budget file"));
            continue;
        };
        for (what, &value) in figures {
            let old = before.get(what).copied().unwrap_or(0);
            let limit = (old as f64 * (1.0 + ALLOWED_GROWTH)).floor() as u64;
            eprintln!("{prog} {what}: {value} (recorded {old}, limit {limit})");
            if value > limit {
                failures.push(format!("{prog} {what}: {value} exceeds the recorded {old} by more than 10%"));
            }
        }
    }
    for prog in recorded.keys().filter(|p| !now.contains_key(*p)) {
        failures.push(format!("{prog}: in the budget file but no longer in the object"));
    }
    assert!(failures.is_empty(), "{}\n{how}", failures.join("\n"));
}
