//! Redelivery against a model (written as an adversarial review of the receive path's
//! shortcuts: the redelivery scan skipped when nothing is to be delivered again, the owner's
//! lane views made once). Random sequences of sends (mixed sizes, padding at the ring's end), receives (copy, in place,
//! batch), out-of-order acks, releases, drops, leaks, and closes/reopens of the receiver,
//! checked against a model of G2/G3: a message is delivered unflagged at most once, every
//! redelivery is flagged and of a message delivered before and not acknowledged, redeliveries
//! (released here or left by an earlier owner) come before any fresh message, fresh messages
//! come highest priority first and in order, and nothing is lost.

mod common;
use baton::{AckError, Attributes, Message, Queue, Receiver};
use common::TestDomain;
use std::collections::{BTreeSet, HashMap, VecDeque};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Model {
    fresh: [VecDeque<u64>; 4],
    lane_of: HashMap<u64, usize>,
    delivered: BTreeSet<u64>,
    acked: BTreeSet<u64>,
    /// Delivered before, not acknowledged, not in the current receiver's hands: must come
    /// again, flagged, before anything fresh.
    pending: BTreeSet<u64>,
    unflagged: HashMap<u64, u32>,
}

impl Model {
    fn got(&mut self, id: u64, redelivered: bool, ctx: &str) {
        if std::env::var("BATON_MODEL_LOG").is_ok() {
            eprintln!(
                "{ctx}: got {id} lane {} flagged {redelivered}",
                self.lane_of[&id]
            );
        }
        assert!(
            !self.acked.contains(&id),
            "{ctx}: {id} delivered after its ack"
        );
        if self.delivered.contains(&id) {
            assert!(redelivered, "{ctx}: {id} delivered again unflagged");
            assert!(
                self.pending.remove(&id),
                "{ctx}: {id} redelivered while still in hand"
            );
        } else {
            assert!(!redelivered, "{ctx}: fresh {id} flagged");
            assert!(
                self.pending.is_empty(),
                "{ctx}: fresh {id} before redeliveries {:?}",
                self.pending
            );
            let p = self.lane_of[&id];
            let first = (0..4).find(|&q| !self.fresh[q].is_empty()).unwrap();
            assert_eq!(first, p, "{ctx}: {id} of lane {p} before lane {first}");
            assert_eq!(
                self.fresh[p].pop_front(),
                Some(id),
                "{ctx}: order in lane {p}"
            );
            self.delivered.insert(id);
            *self.unflagged.entry(id).or_default() += 1;
        }
    }
    fn empty(&self, ctx: &str) {
        assert!(
            self.pending.is_empty(),
            "{ctx}: Empty with {:?} to redeliver",
            self.pending
        );
        assert!(
            self.fresh.iter().all(|f| f.is_empty()),
            "{ctx}: Empty with fresh {:?}",
            self.fresh
        );
    }
}

fn id_of(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload[..8].try_into().unwrap())
}

fn run(seed: u64, steps: usize) {
    let t = TestDomain::new("rv-model");
    let attrs = Attributes {
        capacity: [512, 640, 512, 448],
        max_message: 100,
        ..Default::default()
    };
    let q = Queue::create(&t.domain, "q", &attrs).unwrap();
    let senders: Vec<_> = (0..4u8)
        .map(|p| q.sender().with_priority(p).unwrap())
        .collect();
    let mut rng = Rng(seed | 1);
    let mut m = Model {
        fresh: Default::default(),
        lane_of: HashMap::new(),
        delivered: BTreeSet::new(),
        acked: BTreeSet::new(),
        pending: BTreeSet::new(),
        unflagged: HashMap::new(),
    };
    let mut rx: Option<Receiver> = Some(q.receiver().unwrap());
    // Messages in hand: (message, id, from the current receiver).
    let mut held: Vec<(Message, u64, bool)> = Vec::new();
    let mut next_id = 1u64;
    let mut leaked_current: Vec<u64> = Vec::new();
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        let log = std::env::var("BATON_MODEL_LOG").is_ok();
        match rng.below(100) {
            0..=29 => {
                let p = rng.below(4) as usize;
                let len = 8 + rng.below(93) as usize;
                let mut payload = vec![0xAB; len];
                payload[..8].copy_from_slice(&next_id.to_le_bytes());
                let ok = senders[p].try_send(&payload[..]).is_ok();
                if log {
                    eprintln!("{ctx}: send {next_id} lane {p} len {len} ok {ok}");
                }
                if ok {
                    m.fresh[p].push_back(next_id);
                    m.lane_of.insert(next_id, p);
                    next_id += 1;
                }
            }
            30..=54 => {
                if let Some(r) = rx.as_mut() {
                    match r.try_recv() {
                        Ok(msg) => {
                            let id = id_of(msg.payload());
                            m.got(id, msg.redelivered(), &ctx);
                            held.push((msg, id, true));
                        }
                        Err(baton::RecvError::Empty) => m.empty(&ctx),
                        Err(e) => panic!("{ctx}: {e}"),
                    }
                }
            }
            55..=59 => {
                if let Some(r) = rx.as_mut() {
                    match r.try_recv_in_place() {
                        Ok(msg) => {
                            let id = id_of(msg.payload());
                            m.got(id, msg.redelivered(), &ctx);
                            if log {
                                eprintln!("{ctx}: (in place)");
                            }
                            if rng.below(2) == 0 {
                                msg.ack().unwrap();
                                m.acked.insert(id);
                            } else {
                                msg.release().unwrap();
                                m.pending.insert(id);
                            }
                        }
                        Err(baton::RecvError::Empty) => m.empty(&ctx),
                        Err(e) => panic!("{ctx}: {e}"),
                    }
                }
            }
            60..=63 => {
                if let Some(r) = rx.as_mut() {
                    let mut got = Vec::new();
                    let n = r
                        .try_recv_batch(1 + rng.below(4) as usize, |payload, meta| {
                            got.push((id_of(payload), meta.redelivered))
                        })
                        .unwrap();
                    assert_eq!(n, got.len());
                    if log {
                        eprintln!("{ctx}: batch {got:?}");
                    }
                    if n == 0 {
                        m.empty(&ctx);
                    }
                    for (id, flag) in got {
                        m.got(id, flag, &ctx);
                        m.acked.insert(id);
                    }
                }
            }
            64..=83 if !held.is_empty() => {
                let i = rng.below(held.len() as u64) as usize;
                let (msg, id, current) = held.swap_remove(i);
                let release = rng.below(4) == 0;
                let r = if release { msg.release() } else { msg.ack() };
                if log {
                    eprintln!(
                        "{ctx}: {} {id} current {current}: {r:?}",
                        if release { "release" } else { "ack" }
                    );
                }
                match r {
                    Ok(()) if current && release => {
                        m.pending.insert(id);
                    }
                    Ok(()) if current => {
                        m.acked.insert(id);
                    }
                    // An earlier receiver's message: stays for the next owner.
                    Err(AckError::Closed) if !current => {}
                    other => panic!("{ctx}: finishing {id} (current {current}): {other:?}"),
                }
            }
            84..=86 if !held.is_empty() => {
                let i = rng.below(held.len() as u64) as usize;
                let (msg, id, current) = held.swap_remove(i);
                if log {
                    eprintln!("{ctx}: forget {id} current {current}");
                }
                std::mem::forget(msg); // leaked: delivered, never acknowledged
                if current {
                    leaked_current.push(id); // to the next owner
                }
            }
            87..=92 => {
                // Close and reopen: everything delivered and not acknowledged comes again.
                if log {
                    eprintln!("{ctx}: reopen");
                }
                drop(rx.take());
                for h in held.iter_mut() {
                    h.2 = false;
                    // (An older handle of a message since delivered again and acknowledged
                    // stays in hand: it is not pending.)
                    if !m.acked.contains(&h.1) {
                        m.pending.insert(h.1);
                    }
                }
                m.pending.extend(leaked_current.drain(..));
                rx = Some(q.receiver().unwrap());
            }
            _ => {}
        }
    }
    // Close, reopen, drain.
    drop(rx.take());
    for (_, id, _) in &held {
        if !m.acked.contains(id) {
            m.pending.insert(*id);
        }
    }
    m.pending.extend(leaked_current.drain(..));
    let mut r = q.receiver().unwrap();
    loop {
        match r.try_recv() {
            Ok(msg) => {
                let id = id_of(msg.payload());
                m.got(id, msg.redelivered(), &format!("seed {seed} drain"));
                msg.ack().unwrap();
                m.acked.insert(id);
            }
            Err(baton::RecvError::Empty) => break,
            Err(e) => panic!("seed {seed} drain: {e}"),
        }
    }
    m.empty(&format!("seed {seed} end"));
    assert_eq!(
        m.acked.len() as u64,
        next_id - 1,
        "seed {seed}: all acknowledged"
    );
    assert!(m.unflagged.values().all(|&n| n == 1));
    drop(held);
}

/// 300 sequences of 3000 steps (about 6 s). `BATON_MODEL_SEED=n` runs the one of seed `n`,
/// `BATON_MODEL_LOG=1` prints its steps.
#[test]
fn random_sequences_keep_redelivery_flags_and_order() {
    if let Some(seed) = std::env::var("BATON_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed, 3000);
        return;
    }
    for seed in 1..=300u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 3000);
    }
}
