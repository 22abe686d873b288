//! The reliable control channel of one control connection: RFC 2661 5.8,
//! RFC 3931 4.2 and the slow start / congestion avoidance of RFC 2661
//! Appendix A. Sans-IO: the caller feeds received Ns/Nr and messages and
//! the clock, and polls what to put on the wire.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

/// `a < b` in the 16-bit sequence space: `a` lies in the 32767 values
/// before `b` (RFC 2661 5.8).
pub fn seq_lt(a: u16, b: u16) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 0x8000
}

/// Reliable transport parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    /// First retransmission after this long (RFC 2661: 1 s recommended).
    pub retransmit_initial: Duration,
    /// Cap on the doubling interval, honoured as configured (RFC 3931 4.2:
    /// "SHOULD be no less than 8 seconds").
    pub retransmit_cap: Duration,
    /// Retransmissions of one message before the channel fails (RFC 2661:
    /// 5 recommended).
    pub max_retries: u32,
    /// How long to wait for a message to piggyback an acknowledgement on
    /// before sending a ZLB (v2) or ACK (v3).
    pub ack_delay: Duration,
    /// Receive Window Size we advertise (and hold out-of-order messages
    /// for).
    pub receive_window: u16,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            retransmit_initial: Duration::from_secs(1),
            retransmit_cap: Duration::from_secs(8),
            max_retries: 5,
            ack_delay: Duration::from_millis(50),
            receive_window: 16,
        }
    }
}

/// Result of feeding one received control message (or ZLB) to the channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<T> {
    /// Messages now deliverable in order (possibly none: a ZLB, or a
    /// message held until a gap is filled).
    Deliver(Vec<T>),
    /// Already received: acknowledged again, not delivered.
    Duplicate,
    /// Ns beyond our receive window: discarded.
    OutOfWindow,
    /// Nr acknowledges messages never sent: the message is invalid (RFC
    /// 3931 4.2) and ignored.
    BadNr,
}

/// What to put on the wire next.
#[derive(Debug, PartialEq, Eq)]
pub enum Transmit<'a, T> {
    /// A (re)transmission of a sequenced message.
    Message { ns: u16, nr: u16, msg: &'a T },
    /// An acknowledgement without a message (ZLB in v2, ACK or ZLB in v3).
    Ack { ns: u16, nr: u16 },
}

/// The channel gave up: no acknowledgement after `max_retries`
/// retransmissions. RFC 2661 5.8: "the tunnel and all sessions within MUST
/// be cleared".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("control channel timed out after {retries} retransmissions")]
pub struct ChannelTimeout {
    pub retries: u32,
}

/// Counters of the reliable transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub sent: u64,
    pub retransmitted: u64,
    pub acks_sent: u64,
    pub received: u64,
    pub duplicates: u64,
    pub out_of_window: u64,
    pub out_of_order_held: u64,
    pub bad_nr: u64,
}

#[derive(Debug)]
pub struct Channel<T, R = T> {
    cfg: ChannelConfig,
    next_ns: u16,
    next_nr: u16,
    peer_window: u16,
    /// Sent, not yet acknowledged, in Ns order.
    outstanding: VecDeque<(u16, T)>,
    /// Not yet sent (window full).
    queued: VecDeque<T>,
    /// Ns of outstanding messages due for (re)transmission.
    due: VecDeque<u16>,
    /// Out-of-order messages held, by distance from `next_nr`.
    held: BTreeMap<u16, (u16, R)>,
    cwnd: u16,
    ssthresh: u16,
    ca_acked: u16,
    retries: u32,
    rto: Duration,
    retransmit_at: Option<Instant>,
    ack_at: Option<Instant>,
    /// Messages delivered since the last acknowledgement we sent.
    unacked: u16,
    stats: ChannelStats,
}

impl<T, R> Channel<T, R> {
    pub fn new(cfg: ChannelConfig) -> Self {
        let rto = cfg.retransmit_initial;
        Self {
            cfg,
            next_ns: 0,
            next_nr: 0,
            // "MUST accept a window of up to 4": the peer's is 4 until its
            // Receive Window Size AVP says otherwise.
            peer_window: 4,
            outstanding: VecDeque::new(),
            queued: VecDeque::new(),
            due: VecDeque::new(),
            held: BTreeMap::new(),
            cwnd: 1,
            ssthresh: 4,
            ca_acked: 0,
            retries: 0,
            rto,
            retransmit_at: None,
            ack_at: None,
            unacked: 0,
            stats: ChannelStats::default(),
        }
    }

    pub fn config(&self) -> &ChannelConfig {
        &self.cfg
    }

    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// Next Ns to be assigned, and next Ns expected from the peer.
    pub fn ns_nr(&self) -> (u16, u16) {
        (self.next_ns, self.next_nr)
    }

    /// The peer's Receive Window Size (RFC 2661 4.4.3: 0 is invalid and
    /// ignored here; the caller refuses the message).
    pub fn set_peer_window(&mut self, window: u16) {
        if window > 0 {
            self.peer_window = window;
            self.ssthresh = window;
        }
    }

    /// True when everything sent was acknowledged and nothing waits.
    pub fn is_idle(&self) -> bool {
        self.outstanding.is_empty() && self.queued.is_empty()
    }

    /// Messages sent or queued and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.outstanding.len() + self.queued.len()
    }

    /// Queues a message for reliable delivery.
    pub fn send(&mut self, now: Instant, msg: T) {
        self.queued.push_back(msg);
        self.fill_window(now);
    }

    fn window(&self) -> usize {
        usize::from(self.cwnd.min(self.peer_window).max(1))
    }

    fn fill_window(&mut self, now: Instant) {
        while self.outstanding.len() < self.window() {
            let Some(msg) = self.queued.pop_front() else { break };
            let ns = self.next_ns;
            self.next_ns = ns.wrapping_add(1);
            self.outstanding.push_back((ns, msg));
            self.due.push_back(ns);
            if self.retransmit_at.is_none() {
                self.retransmit_at = Some(now + self.rto);
            }
        }
    }

    /// Feeds a received header (and message, `None` for a ZLB or a v3 ACK).
    pub fn on_receive(&mut self, now: Instant, ns: u16, nr: u16, msg: Option<R>) -> Received<R> {
        if !self.process_nr(now, nr) {
            self.stats.bad_nr += 1;
            return Received::BadNr;
        }
        let Some(msg) = msg else {
            return Received::Deliver(Vec::new());
        };
        self.stats.received += 1;
        let d = ns.wrapping_sub(self.next_nr);
        if d == 0 {
            let mut out = vec![msg];
            self.next_nr = self.next_nr.wrapping_add(1);
            // Drain what was held behind the gap.
            let held = std::mem::take(&mut self.held);
            for (_, (hns, m)) in held {
                if hns == self.next_nr {
                    out.push(m);
                    self.next_nr = self.next_nr.wrapping_add(1);
                } else if !seq_lt(hns, self.next_nr) {
                    self.held.insert(hns.wrapping_sub(self.next_nr), (hns, m));
                }
            }
            // RFC 3931 4.2: a peer "MUST NOT actively delay acknowledgment
            // of messages as a technique for flow control". The delay only
            // waits for a message to carry the acknowledgement. A quarter
            // of the window we advertise is acknowledged at once (TCP acks
            // every second segment, RFC 1122 4.2.3.2; our windows are
            // small), so that a peer whose window fills with messages we
            // have no answer to (ICCNs, FSRs) is not held for the delay.
            self.unacked = self.unacked.saturating_add(out.len() as u16);
            self.schedule_ack(now, self.unacked >= (self.cfg.receive_window / 4).max(2));
            Received::Deliver(out)
        } else if d >= 0x8000 {
            // RFC 2661 5.8: "receipt of duplicate messages MUST be
            // acknowledged by the reliable transport".
            self.stats.duplicates += 1;
            self.schedule_ack(now, true);
            Received::Duplicate
        } else if d < self.cfg.receive_window {
            self.stats.out_of_order_held += 1;
            self.held.entry(d).or_insert((ns, msg));
            self.schedule_ack(now, true);
            Received::Deliver(Vec::new())
        } else {
            self.stats.out_of_window += 1;
            Received::OutOfWindow
        }
    }

    /// Acknowledges outstanding messages below `nr`. False if `nr` is
    /// beyond what was sent.
    fn process_nr(&mut self, now: Instant, nr: u16) -> bool {
        let base = self.outstanding.front().map_or(self.next_ns, |(ns, _)| *ns);
        if seq_lt(nr, base) {
            // An old acknowledgement (a duplicate or a reordered message):
            // nothing new to flush.
            return true;
        }
        let acked = nr.wrapping_sub(base);
        if usize::from(acked) > self.outstanding.len() {
            // RFC 3931 4.2: Nr beyond the last Ns sent + 1 is invalid.
            return false;
        }
        if acked == 0 {
            return true;
        }
        for _ in 0..acked {
            if let Some((ns, _)) = self.outstanding.pop_front() {
                self.due.retain(|d| *d != ns);
            }
            // RFC 2661 Appendix A: slow start below ssthresh, then one more
            // per window's worth of acknowledgements.
            if self.cwnd < self.ssthresh {
                self.cwnd += 1;
            } else {
                self.ca_acked += 1;
                if self.ca_acked >= self.cwnd {
                    self.ca_acked = 0;
                    self.cwnd = self.cwnd.saturating_add(1).min(self.peer_window);
                }
            }
        }
        self.retries = 0;
        self.rto = self.cfg.retransmit_initial;
        self.retransmit_at = None;
        self.fill_window(now);
        if !self.outstanding.is_empty() && self.retransmit_at.is_none() {
            self.retransmit_at = Some(now + self.rto);
        }
        true
    }

    fn schedule_ack(&mut self, now: Instant, immediately: bool) {
        let at = if immediately { now } else { now + self.cfg.ack_delay };
        self.ack_at = Some(self.ack_at.map_or(at, |a| a.min(at)));
    }

    /// Receive Window Size this end advertises.
    pub fn receive_window(&self) -> u16 {
        self.cfg.receive_window
    }

    /// The next thing to send, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit<'_, T>> {
        while let Some(ns) = self.due.pop_front() {
            if let Some(i) = self.outstanding.iter().position(|(n, _)| *n == ns) {
                // A message carries the acknowledgement.
                self.ack_at = None;
                self.unacked = 0;
                self.stats.sent += 1;
                let nr = self.next_nr;
                return Some(Transmit::Message { ns, nr, msg: &self.outstanding[i].1 });
            }
        }
        if self.ack_due().is_some_and(|a| a <= now) {
            self.ack_at = None;
            self.unacked = 0;
            self.stats.acks_sent += 1;
            return Some(Transmit::Ack { ns: self.next_ns, nr: self.next_nr });
        }
        None
    }

    /// Whether a message of ours waits for the window to open. Then no
    /// message of ours can carry an acknowledgement before the peer
    /// acknowledges one, and the peer may be waiting the same way (both
    /// ends query after a reset, RFC 4951 3.3, each from a window of one):
    /// waiting the whole ack delay would stall both ends for that long.
    fn window_blocked(&self) -> bool {
        !self.queued.is_empty()
    }

    /// When the pending acknowledgement is due: after the ack delay, or
    /// after a tenth of it while our window is blocked (not at once: a
    /// burst of the peer's messages then still gets one acknowledgement).
    fn ack_due(&self) -> Option<Instant> {
        let at = self.ack_at?;
        // `ack_at` is the first unacknowledged delivery plus the delay (or
        // earlier, when due at once).
        let early = at.checked_sub(self.cfg.ack_delay - self.cfg.ack_delay / 10).unwrap_or(at);
        Some(if self.window_blocked() { early } else { at })
    }

    /// When [`Channel::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.retransmit_at, self.ack_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the retransmission timer (the ack timer is served by
    /// [`Channel::poll_transmit`]).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ChannelTimeout> {
        let Some(at) = self.retransmit_at else { return Ok(()) };
        if at > now {
            return Ok(());
        }
        if self.outstanding.is_empty() {
            self.retransmit_at = None;
            return Ok(());
        }
        if self.retries >= self.cfg.max_retries {
            return Err(ChannelTimeout { retries: self.retries });
        }
        self.retries += 1;
        // Appendix A: on a timeout, halve the threshold and restart slow
        // start from a window of one.
        self.ssthresh = (self.cwnd / 2).max(1);
        self.cwnd = 1;
        self.ca_acked = 0;
        // RFC 2661 5.8 / RFC 3931 4.2: exponential back-off, capped at the
        // configured cap (RFC 3931: it "SHOULD be no less than 8 seconds";
        // the engine raises it to 8 s for L2TPv2, where RFC 2661 says MUST).
        self.rto = (self.rto * 2).min(self.cfg.retransmit_cap.max(self.cfg.retransmit_initial));
        if let Some((ns, _)) = self.outstanding.front() {
            if !self.due.contains(ns) {
                self.due.push_front(*ns);
            }
            self.stats.retransmitted += 1;
        }
        self.retransmit_at = Some(now + self.rto);
        Ok(())
    }

    /// Retransmissions of the oldest message so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Keeps retransmitting after a timeout (at the capped interval): used
    /// while a peer's RFC 4951 Recovery Time runs.
    pub fn extend(&mut self, now: Instant) {
        self.retries = 0;
        self.retransmit_at = Some(now + self.rto);
    }

    /// RFC 4951 3.2.2 (F-CC-1, F-CC-2): flush both windows and restart the
    /// sequence numbers at `ns`/`nr`.
    pub fn reset(&mut self, ns: u16, nr: u16) {
        self.outstanding.clear();
        self.queued.clear();
        self.due.clear();
        self.held.clear();
        self.next_ns = ns;
        self.next_nr = nr;
        self.cwnd = 1;
        self.ca_acked = 0;
        self.retries = 0;
        self.rto = self.cfg.retransmit_initial;
        self.retransmit_at = None;
        self.ack_at = None;
        self.unacked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ChannelConfig {
        ChannelConfig { receive_window: 8, ..ChannelConfig::default() }
    }

    /// Moves everything `from` wants to send to `to`, dropping messages
    /// whose Ns is in `lose` (once each).
    fn pump(now: Instant, from: &mut Channel<u32>, to: &mut Channel<u32>, lose: &mut Vec<u16>, got: &mut Vec<u32>) {
        let mut wire = Vec::new();
        while let Some(t) = from.poll_transmit(now) {
            match t {
                Transmit::Message { ns, nr, msg } => wire.push((ns, nr, Some(*msg))),
                Transmit::Ack { ns, nr } => wire.push((ns, nr, None)),
            }
        }
        for (ns, nr, m) in wire {
            if m.is_some() {
                if let Some(i) = lose.iter().position(|l| *l == ns) {
                    lose.remove(i);
                    continue;
                }
            }
            if let Received::Deliver(v) = to.on_receive(now, ns, nr, m) {
                got.extend(v);
            }
        }
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_lt(0, 1));
        assert!(seq_lt(65535, 0));
        assert!(seq_lt(15, 32782));
        assert!(!seq_lt(15, 32784));
        assert!(!seq_lt(7, 7));
    }

    #[test]
    fn in_order_delivery_with_loss_and_retransmission() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Channel::new(cfg()), Channel::new(cfg()));
        a.set_peer_window(8);
        b.set_peer_window(8);
        for i in 0..20 {
            a.send(t0, i);
        }
        let mut lose = vec![0, 3, 3, 7];
        let mut got = Vec::new();
        let mut now = t0;
        for _ in 0..200 {
            pump(now, &mut a, &mut b, &mut lose, &mut got);
            pump(now, &mut b, &mut a, &mut Vec::new(), &mut Vec::new());
            if a.is_idle() {
                break;
            }
            now = [a.poll_timeout(), b.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + Duration::from_millis(10));
            a.handle_timeout(now).expect("no timeout");
        }
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        assert!(a.is_idle());
        assert!(a.stats().retransmitted >= 3, "{:?}", a.stats());
    }

    #[test]
    fn window_limits_outstanding_messages() {
        let t0 = Instant::now();
        let mut a: Channel<u32> = Channel::new(cfg());
        a.set_peer_window(4);
        for i in 0..10 {
            a.send(t0, i);
        }
        let mut sent = 0;
        while let Some(Transmit::Message { .. }) = a.poll_transmit(t0) {
            sent += 1;
        }
        // Slow start: one message until the first acknowledgement.
        assert_eq!(sent, 1);
        assert_eq!(a.on_receive(t0, 0, 1, None), Received::Deliver(vec![]));
        let mut sent = 0;
        while let Some(Transmit::Message { .. }) = a.poll_transmit(t0) {
            sent += 1;
        }
        assert_eq!(sent, 2, "cwnd grew to 2");
        assert_eq!(a.on_receive(t0, 0, 3, None), Received::Deliver(vec![]));
        let mut sent = 0;
        while let Some(Transmit::Message { .. }) = a.poll_transmit(t0) {
            sent += 1;
        }
        assert_eq!(sent, 4, "cwnd capped by the peer's window of 4");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_fails() {
        let t0 = Instant::now();
        let mut a: Channel<u32> = Channel::new(ChannelConfig { max_retries: 5, ..cfg() });
        a.send(t0, 1);
        assert!(matches!(a.poll_transmit(t0), Some(Transmit::Message { ns: 0, .. })));
        let mut now = t0;
        let mut gaps = Vec::new();
        loop {
            let next = a.poll_timeout().expect("timer");
            gaps.push((next - now).as_secs());
            now = next;
            match a.handle_timeout(now) {
                Ok(()) => assert!(matches!(a.poll_transmit(now), Some(Transmit::Message { ns: 0, .. }))),
                Err(e) => {
                    assert_eq!(e.retries, 5);
                    break;
                }
            }
        }
        assert_eq!(gaps, vec![1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn a_quarter_of_the_window_is_acknowledged_at_once() {
        let t0 = Instant::now();
        let mut b: Channel<u32> = Channel::new(ChannelConfig { receive_window: 16, ..cfg() });
        for ns in 0..3 {
            assert_eq!(b.on_receive(t0, ns, 0, Some(u32::from(ns))), Received::Deliver(vec![u32::from(ns)]));
            assert_eq!(b.poll_transmit(t0), None, "{} message(s): the ack waits for a reply to carry it", ns + 1);
        }
        assert_eq!(b.on_receive(t0, 3, 0, Some(3)), Received::Deliver(vec![3]));
        assert_eq!(b.poll_transmit(t0), Some(Transmit::Ack { ns: 0, nr: 4 }), "the fourth of a window of 16");
        assert_eq!(b.on_receive(t0, 4, 0, Some(4)), Received::Deliver(vec![4]));
        assert_eq!(b.poll_transmit(t0), None, "the count restarts after an ack");
    }

    #[test]
    fn a_blocked_window_does_not_delay_the_acknowledgement() {
        let t0 = Instant::now();
        let mut b: Channel<u32> = Channel::new(cfg());
        b.send(t0, 10);
        b.send(t0, 11);
        assert!(matches!(b.poll_transmit(t0), Some(Transmit::Message { ns: 0, nr: 0, .. })));
        assert_eq!(b.poll_transmit(t0), None, "window of one: 11 waits");
        // The peer's message does not acknowledge ours: 11 stays blocked,
        // so nothing of ours can carry the ack soon.
        assert_eq!(b.on_receive(t0, 0, 0, Some(7)), Received::Deliver(vec![7]));
        let early = t0 + b.config().ack_delay / 10;
        assert_eq!(b.poll_timeout(), Some(early.min(t0 + b.config().retransmit_initial)), "a tenth of the ack delay");
        assert_eq!(b.poll_transmit(early - Duration::from_millis(1)), None);
        assert_eq!(b.poll_transmit(early), Some(Transmit::Ack { ns: 1, nr: 1 }));
    }

    #[test]
    fn duplicates_are_acked_immediately_and_not_delivered() {
        let t0 = Instant::now();
        let mut b: Channel<u32> = Channel::new(cfg());
        assert_eq!(b.on_receive(t0, 0, 0, Some(7)), Received::Deliver(vec![7]));
        // The delayed ack is not due yet.
        assert_eq!(b.poll_transmit(t0), None);
        assert_eq!(b.on_receive(t0, 0, 0, Some(7)), Received::Duplicate);
        assert_eq!(b.poll_transmit(t0), Some(Transmit::Ack { ns: 0, nr: 1 }));
    }

    #[test]
    fn out_of_window_is_discarded_and_bad_nr_ignored() {
        let t0 = Instant::now();
        let mut b: Channel<u32> = Channel::new(cfg());
        assert_eq!(b.on_receive(t0, 100, 0, Some(1)), Received::OutOfWindow);
        assert_eq!(b.on_receive(t0, 0, 5, Some(1)), Received::BadNr);
        assert_eq!(b.ns_nr(), (0, 0));
    }

    #[test]
    fn delayed_ack_is_piggybacked_when_a_message_goes_out() {
        let t0 = Instant::now();
        let mut b: Channel<u32> = Channel::new(cfg());
        b.on_receive(t0, 0, 0, Some(1));
        b.send(t0, 9);
        assert_eq!(b.poll_transmit(t0), Some(Transmit::Message { ns: 0, nr: 1, msg: &9 }));
        assert_eq!(b.poll_transmit(t0 + Duration::from_secs(1)), None, "no separate ZLB");
    }

    #[test]
    fn f_cc_2_reset_sets_ns_nr_and_flushes() {
        let t0 = Instant::now();
        let mut a: Channel<u32> = Channel::new(cfg());
        a.send(t0, 1);
        a.send(t0, 2);
        a.reset(3, 100);
        assert!(a.is_idle());
        assert_eq!(a.ns_nr(), (3, 100));
        a.send(t0, 5);
        assert_eq!(a.poll_transmit(t0), Some(Transmit::Message { ns: 3, nr: 100, msg: &5 }));
    }
}
