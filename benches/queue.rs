//! In-process cost of one send plus one receive through a baton queue, next to
//! `std::sync::mpsc` measured in the same run; the same through a shared queue's consumer
//! (next to the owner's receive); and a selective receive that walks past 100 waiting
//! messages of another type. (Across processes: `baton bench`, and `benches/transports.rs`.)

use baton::TypeFilter;

use baton::{Attributes, Domain, Queue};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn send_then_receive(c: &mut Criterion) {
    let domain = Domain::new(&format!("bench-{}", std::process::id())).unwrap();
    let attrs = Attributes {
        capacity: [1 << 20; 4],
        max_message: 64 * 1024,
        ..Default::default()
    };
    let queue = Queue::create(&domain, "b", &attrs).unwrap();
    let tx = queue.sender();
    let mut rx = queue.receiver().unwrap();
    let mut group = c.benchmark_group("send_then_receive");
    for size in [64usize, 4096, 65536] {
        let payload = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("baton", size), &payload, |b, p| {
            b.iter(|| {
                tx.try_send(&p[..]).unwrap();
                rx.try_recv().unwrap()
            })
        });
        // The batch calls, 64 messages a time (one run, one batch), per message; where 64 of
        // them fit in the lane (this thread is also the receiver).
        if 64 * (size + 64) <= 1 << 20 {
            let run: Vec<&[u8]> = vec![&payload[..]; 64];
            group.bench_with_input(
                BenchmarkId::new("baton_batch_of_64", size),
                &run,
                |b, run| {
                    b.iter_custom(|iters| {
                        let rounds = iters.div_ceil(64);
                        let start = std::time::Instant::now();
                        for _ in 0..rounds {
                            tx.send_batch(run).unwrap();
                            let mut n = 0;
                            while n < 64 {
                                n += rx
                                    .try_recv_batch(64, |p, _| {
                                        std::hint::black_box(p);
                                    })
                                    .unwrap();
                            }
                        }
                        start.elapsed().mul_f64(iters as f64 / (rounds * 64) as f64)
                    })
                },
            );
        }
        let (mtx, mrx) = std::sync::mpsc::channel::<Vec<u8>>();
        group.bench_with_input(BenchmarkId::new("std_mpsc", size), &payload, |b, p| {
            b.iter(|| {
                mtx.send(p.clone()).unwrap();
                mrx.recv().unwrap()
            })
        });
    }
    group.finish();
    drop(rx);
    Queue::remove(&domain, "b").unwrap();
}

/// A consumer of a shared queue: send, take, acknowledge; the owner's receive next to it; and a
/// selective take with 100 messages of another type waiting in front of its match.
fn shared_queue(c: &mut Criterion) {
    let domain = Domain::new(&format!("bench-shared-{}", std::process::id())).unwrap();
    let attrs = Attributes {
        capacity: [1 << 20; 4],
        max_message: 4096,
        ..Default::default()
    };
    let owned = Queue::create(&domain, "owned", &attrs).unwrap();
    let shared = Queue::create(
        &domain,
        "shared",
        &Attributes {
            shared: true,
            ..attrs
        },
    )
    .unwrap();
    let mut group = c.benchmark_group("shared_queue");
    let payload = [7u8; 64];
    group.throughput(Throughput::Elements(1));
    {
        let tx = owned.sender();
        let mut rx = owned.receiver().unwrap();
        group.bench_function("owner_send_recv_ack_64B", |b| {
            b.iter(|| {
                tx.try_send(&payload).unwrap();
                rx.try_recv().unwrap().ack().unwrap()
            })
        });
    }
    let tx = shared.sender();
    let mut consumer = shared.consumer().unwrap();
    group.bench_function("consumer_send_recv_ack_64B", |b| {
        b.iter(|| {
            tx.try_send(&payload).unwrap();
            consumer.try_recv().unwrap().ack().unwrap()
        })
    });
    let ones = shared.sender().with_type(1);
    let twos = shared.sender().with_type(2);
    for _ in 0..100 {
        ones.try_send(&payload).unwrap();
    }
    let mut selective = shared
        .consumer()
        .unwrap()
        .with_filter(TypeFilter::Exactly(2));
    let mut lowest = shared
        .consumer()
        .unwrap()
        .with_filter(TypeFilter::AtMost(5));
    // The 100 waiting messages pin the head, so the records taken past them are freed only
    // when those go: every few thousand takes (untimed), they are taken and sent again.
    let refill = || {
        let mut plain = shared.consumer().unwrap();
        while let Ok(m) = plain.try_recv() {
            m.ack().unwrap();
        }
        for _ in 0..100 {
            ones.try_send(&payload).unwrap();
        }
    };
    // `iters` runs of `one`, timed, in rounds of at most 2000 with a refill between.
    let in_rounds = |iters: u64, one: &mut dyn FnMut()| {
        let mut took = std::time::Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(2000);
            let start = std::time::Instant::now();
            for _ in 0..n {
                one();
            }
            took += start.elapsed();
            left -= n;
            refill();
        }
        took
    };
    group.bench_function("selective_past_100_waiting", |b| {
        b.iter_custom(|iters| {
            in_rounds(iters, &mut || {
                twos.try_send(&payload).unwrap();
                selective.try_recv().unwrap().ack().unwrap();
            })
        })
    });
    // The lowest type not above 5: a walk over all 100 waiting (the first of the lowest wins),
    // taking the first; one of the same type is sent again to keep 100 waiting.
    group.bench_function("lowest_type_of_100_waiting", |b| {
        b.iter_custom(|iters| {
            in_rounds(iters, &mut || {
                lowest.try_recv().unwrap().ack().unwrap();
                ones.try_send(&payload).unwrap();
            })
        })
    });
    group.finish();
    drop((consumer, selective, lowest));
    Queue::remove(&domain, "owned").unwrap();
    Queue::remove(&domain, "shared").unwrap();
}

/// Where the time of one message goes, in one process, 64 B: a send alone and a receive alone
/// (each timed over runs of up to 1,024 messages, the other side done untimed between runs),
/// next to the pieces every message pays whatever the lane: the clock read for `sent_ns`, the
/// `SeqCst` fence of the wake-up check after a compare-and-swap, the allocation a `Message`'s
/// owned payload takes. docs/performance.md (*What each message costs*) reads these.
fn per_message_parts(c: &mut Criterion) {
    const RUN: u64 = 1024;
    let domain = Domain::new(&format!("bench-parts-{}", std::process::id())).unwrap();
    let attrs = Attributes {
        capacity: [1 << 20; 4],
        max_message: 1024,
        ..Default::default()
    };
    let queue = Queue::create(&domain, "p", &attrs).unwrap();
    let tx = queue.sender();
    let mut rx = queue.receiver().unwrap();
    let payload = [7u8; 64];
    let mut group = c.benchmark_group("per_message_parts");
    // Sends and receives `iters` messages in runs of at most RUN, timing only the send half
    // (`send_timed`) or only the receive half.
    let mut timed_half =
        |iters: u64, send_timed: bool, recv: &mut dyn FnMut(&mut baton::Receiver)| {
            let mut spent = std::time::Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(RUN);
                let start = std::time::Instant::now();
                for _ in 0..n {
                    tx.try_send(&payload[..]).unwrap();
                }
                if send_timed {
                    spent += start.elapsed();
                }
                let start = std::time::Instant::now();
                for _ in 0..n {
                    recv(&mut rx);
                }
                if !send_timed {
                    spent += start.elapsed();
                }
                left -= n;
            }
            spent
        };
    group.bench_function("send", |b| {
        b.iter_custom(|iters| {
            timed_half(iters, true, &mut |rx| {
                drop(std::hint::black_box(rx.try_recv().unwrap()))
            })
        })
    });
    group.bench_function("receive_copied", |b| {
        b.iter_custom(|iters| {
            timed_half(iters, false, &mut |rx| {
                drop(std::hint::black_box(rx.try_recv().unwrap()))
            })
        })
    });
    group.bench_function("receive_in_place", |b| {
        b.iter_custom(|iters| {
            timed_half(iters, false, &mut |rx| {
                let m = rx.try_recv_in_place().unwrap();
                std::hint::black_box(m.payload());
            })
        })
    });
    group.bench_function("receive_empty", |b| {
        b.iter(|| std::hint::black_box(rx.try_recv().is_err()))
    });
    group.bench_function("clock_read", |b| b.iter(baton::monotonic_ns));
    let word = std::sync::atomic::AtomicU64::new(0);
    group.bench_function("cas_then_seqcst_fence", |b| {
        b.iter(|| {
            let v = word.load(std::sync::atomic::Ordering::Relaxed);
            let _ = word.compare_exchange(
                v,
                v + 1,
                std::sync::atomic::Ordering::Release,
                std::sync::atomic::Ordering::Relaxed,
            );
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        })
    });
    group.bench_function("vec_64_alloc_copy_free", |b| {
        b.iter(|| std::hint::black_box(std::hint::black_box(&payload[..]).to_vec()))
    });
    group.finish();
    drop(rx);
    drop(tx);
    drop(queue);
    Queue::remove(&domain, "p").unwrap();
}

criterion_group!(benches, send_then_receive, shared_queue, per_message_parts);
criterion_main!(benches);
