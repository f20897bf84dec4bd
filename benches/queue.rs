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

criterion_group!(benches, send_then_receive, shared_queue);
criterion_main!(benches);
