//! baton against the transports people would otherwise use, across two processes on two CPUs:
//! round-trip latency (ping-pong over two channels), one-way throughput, 1 and 4 senders, and
//! consumer pools (1, 2, 4 and 8 consumer processes taking from one queue, 20 µs of work each
//! per message, baton's shared queue against POSIX and System V queues).
//! The same code as `baton bench` (`baton_cli::transports`); each message's sequence number is
//! checked. This executable is its own peer process: started with the peer's arguments, it
//! runs the peer instead of the benchmarks.
//!
//! `cargo bench --bench transports` (`cargo bench -p baton-benches --bench transports --features
//! iceoryx2` to include iceoryx2). A
//! transport that cannot carry a size (POSIX and System V queues above their kernel limits) is
//! reported and skipped.

use baton_cli::transports::{
    many_consumers, pool_throughput, throughput, Peer, Role, Session, Transport,
};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use std::path::PathBuf;
use std::time::Duration;

/// The peer's executable: this one (see [`main`]).
fn baton_exe() -> PathBuf {
    std::env::current_exe().expect("the benchmark's own path")
}

fn round_trip(c: &mut Criterion) {
    let exe = baton_exe();
    for size in [64usize, 4096, 65536] {
        let mut group = c.benchmark_group(format!("round_trip/{size}B"));
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        for t in Transport::all() {
            let mut session = match Session::start(&exe, t, size, Role::Echo) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("round_trip/{size}B/{}: skipped: {e}", t.name());
                    continue;
                }
            };
            if let Err(e) = session.round_trip() {
                eprintln!("round_trip/{size}B/{}: skipped: {e}", t.name());
                continue;
            }
            group.bench_function(BenchmarkId::from_parameter(t.name()), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| session.round_trip().expect("round trip"))
                        .sum()
                })
            });
            session.finish().expect("peer ends cleanly");
        }
        group.finish();
    }
}

fn one_way(c: &mut Criterion) {
    let exe = baton_exe();
    const PER_RUN: u64 = 20_000;
    for (size, senders) in [(64usize, 1u32), (4096, 1), (64, 4)] {
        let mut group = c.benchmark_group(format!("throughput_{senders}to1/{size}B"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(200));
        group.measurement_time(Duration::from_secs(2));
        group.throughput(Throughput::Elements(PER_RUN));
        for t in Transport::all() {
            if (senders > 1 && !t.many_senders()) || !t.measures_throughput() {
                continue;
            }
            let per_sender = PER_RUN / senders as u64;
            if let Err(e) = throughput(&exe, t, size, senders, per_sender) {
                eprintln!("throughput/{size}B/{}: skipped: {e}", t.name());
                continue;
            }
            group.bench_function(BenchmarkId::from_parameter(t.name()), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let rate =
                                throughput(&exe, t, size, senders, per_sender).expect("a run");
                            Duration::from_secs_f64(PER_RUN as f64 / rate)
                        })
                        .sum()
                })
            });
        }
        group.finish();
    }
}

/// Consumer pools: each run sends `PER_RUN` messages to N consumer processes that sleep 20 µs
/// per message (the clock starts once they are all ready).
fn consumer_pool(c: &mut Criterion) {
    let exe = baton_exe();
    const PER_RUN: u64 = 4_000;
    for consumers in [1u32, 2, 4, 8] {
        let mut group = c.benchmark_group(format!("consumer_pool/{consumers}_consumers_20us"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(200));
        group.measurement_time(Duration::from_secs(2));
        group.throughput(Throughput::Elements(PER_RUN));
        for t in Transport::all().into_iter().filter(|&t| many_consumers(t)) {
            if let Err(e) = pool_throughput(&exe, t, 64, consumers, PER_RUN, 20) {
                eprintln!("consumer_pool/{}: skipped: {e}", t.name());
                continue;
            }
            group.bench_function(BenchmarkId::from_parameter(t.name()), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let rate = pool_throughput(&exe, t, 64, consumers, PER_RUN, 20)
                                .expect("a run");
                            Duration::from_secs_f64(PER_RUN as f64 / rate)
                        })
                        .sum()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, round_trip, one_way, consumer_pool);

fn main() {
    Peer::run_if_asked();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
