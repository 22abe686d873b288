//! Drop tracing: `l2tp-ctl dataplane trace`. Turns the programs' tracing on
//! in `TRACE_CFG` for a bounded time (the deadline is the kernel's, so a
//! tracer that dies stops tracing anyway), reads the records the programs
//! write with aya-log from its ring (found through the pinned uplink
//! program, which both programs share), and turns tracing off again.

use std::{
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use aya::maps::{Array, MapData};
use aya_log::EbpfLogger;
use l2tp_common::session::{trace, TraceConfig, MAP_TRACE_CFG};

use super::{map_pin, prog_pin, DataplaneError, Pinned, Result, Role};

/// One traced frame.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TraceLine {
    /// "uplink" (received L2TP) or "attach" (customer frames).
    pub program: &'static str,
    /// What happened to the frame: "drop" or "pass" (to the kernel).
    pub action: &'static str,
    /// `l2tp_common::session::trace::name` of the reason.
    pub reason: &'static str,
    /// Local session ID (received data: the Session ID of the frame).
    pub session: u32,
    /// Sequence numbers involved (out of sequence, duplicate: the Ns
    /// received and the Nr expected); 0 otherwise.
    pub ns: u32,
    pub nr: u32,
}

impl TraceLine {
    /// Parses a record's message: three decimal integers (see
    /// `l2tp_common::session::trace`).
    fn parse(msg: &str) -> Option<Self> {
        let mut it = msg.split(' ');
        let what: u32 = it.next()?.parse().ok()?;
        let session: u32 = it.next()?.parse().ok()?;
        let seq: u64 = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        let (program, reason) = (what >> 16, what & 0xffff);
        let (ns, nr) = ((seq >> 32) as u32, seq as u32);
        Some(Self {
            program: match program {
                trace::UPLINK => "uplink",
                trace::ATTACH => "attach",
                _ => return None,
            },
            action: if trace::dropped(program, reason) { "drop" } else { "pass" },
            reason: trace::name(reason),
            session,
            ns,
            nr,
        })
    }
}

impl std::fmt::Display for TraceLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<6} {:<4} {:<20} session {:<10}", self.program, self.action, self.reason, self.session)?;
        if self.ns != 0 || self.nr != 0 {
            write!(f, " ns {} nr {}", self.ns, self.nr)?;
        }
        Ok(())
    }
}

/// The `log::Log` the aya-log reader writes to: the records' messages,
/// kept for the caller (never the process's global logger).
#[derive(Clone, Default)]
struct Sink {
    records: Arc<Mutex<Vec<String>>>,
}

impl log::Log for Sink {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut r) = self.records.lock() {
            r.push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// What a trace saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceSummary {
    pub traced: u64,
    /// Records that were not ours (another object's format).
    pub unreadable: u64,
}

/// Set by SIGINT/SIGTERM while tracing: stop early, and still turn tracing
/// off.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Turns tracing off when dropped (also on an error or a panic).
struct Armed<'a>(&'a mut Array<MapData, TraceConfig>);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        let _ = self.0.set(0, TraceConfig::default(), 0);
    }
}

impl Pinned {
    /// Traces for `duration` the frames the programs drop or pass up
    /// unexpectedly, of `session` only if given; calls `line` for each.
    /// One trace at a time: another one still running is an error.
    pub fn trace(
        &self,
        session: Option<u32>,
        duration: Duration,
        mut line: impl FnMut(&TraceLine),
    ) -> Result<TraceSummary> {
        let cfg_pin = map_pin(&self.dir, MAP_TRACE_CFG);
        if !cfg_pin.exists() {
            return Err(DataplaneError::Missing(
                "TRACE_CFG pin (data plane pinned by an older l2tp-ctl: remove it with `dataplane detach --all` and let it be re-created)",
            ));
        }
        let mut cfg: Array<MapData, TraceConfig> = Array::try_from(self.map(MAP_TRACE_CFG)?)?;
        let now = monotonic_ns();
        let running = cfg.get(&0, 0)?;
        if running.on != 0 && running.until_ns > now {
            return Err(DataplaneError::Session(format!(
                "another trace is running for {:.1} s more",
                (running.until_ns - now) as f64 / 1e9
            )));
        }
        let prog = aya::programs::ProgramInfo::from_pin(prog_pin(&self.dir, Role::Uplink))?;
        let sink = Sink::default();
        let mut logger = EbpfLogger::init_from_id_with_logger(prog.id(), sink.clone()).map_err(|e| {
            DataplaneError::Session(format!(
                "the drop-trace ring of the pinned programs: {e} (a data plane pinned by an older l2tp-ctl has none)"
            ))
        })?;
        let mut summary = TraceSummary::default();
        let mut read = |logger: &mut EbpfLogger<Sink>, summary: &mut TraceSummary, deliver: bool| {
            // aya-log panics on a record it cannot parse (one written by a
            // different object): counted, never a crash.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| logger.flush())).is_ok();
            if !ok {
                summary.unreadable += 1;
            }
            let records = std::mem::take(&mut *sink.records.lock().unwrap_or_else(|e| e.into_inner()));
            for r in records {
                match TraceLine::parse(&r) {
                    Some(l) if deliver => {
                        summary.traced += 1;
                        line(&l);
                    }
                    Some(_) => {}
                    None => summary.unreadable += 1,
                }
            }
        };
        // What an earlier trace left in the ring is not this one's.
        read(&mut logger, &mut summary, false);
        summary = TraceSummary::default();

        STOP.store(false, Ordering::Relaxed);
        // SAFETY: the handler only stores to an atomic.
        let old = unsafe {
            [
                libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t),
                libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t),
            ]
        };
        let until = Instant::now() + duration;
        let armed = Armed(&mut cfg);
        armed.0.set(
            0,
            TraceConfig { on: 1, session: session.unwrap_or(0), until_ns: now + duration.as_nanos() as u64 },
            0,
        )?;
        eprintln!(
            "tracing {} for {} s (Ctrl-C stops)",
            session.map_or("every session".to_owned(), |s| format!("session {s}")),
            duration.as_secs()
        );
        let fd = logger.as_raw_fd();
        while !STOP.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // At most 100 ms, so that a signal or the end is seen promptly.
            let ms = left.as_millis().clamp(1, 100) as libc::c_int;
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, ms) };
            read(&mut logger, &mut summary, true);
        }
        drop(armed);
        // Records written before tracing went off.
        read(&mut logger, &mut summary, true);
        // SAFETY: restoring the handlers saved above.
        unsafe {
            libc::signal(libc::SIGINT, old[0]);
            libc::signal(libc::SIGTERM, old[1]);
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_into_lines_and_garbage_does_not() {
        let record = |program: u32, reason: u32, session: u32, ns: u64, nr: u64| {
            format!("{} {session} {}", program << 16 | reason, ns << 32 | nr)
        };
        let l = TraceLine::parse(&record(1, 5, 4660, 7, 9)).expect("a record");
        assert_eq!(
            l,
            TraceLine { program: "uplink", action: "drop", reason: "out-of-sequence", session: 4660, ns: 7, nr: 9 }
        );
        assert_eq!(TraceLine::parse(&record(1, 8, 77, 0, 0)).expect("record").action, "pass");
        assert_eq!(TraceLine::parse(&record(2, 10, 77, 0, 0)).expect("record").action, "drop");
        assert_eq!(TraceLine::parse(&record(1, 10, 77, 0, 0)).expect("record").action, "pass");
        let three = record(3, 5, 1, 2, 3);
        for bad in ["", "65541 4660", "65541 4660 7 9", three.as_str(), "x 1 2", "hello"] {
            assert_eq!(TraceLine::parse(bad), None, "{bad:?}");
        }
    }
}
