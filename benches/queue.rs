//! In-process cost of one send plus one receive through a baton queue, next to
//! `std::sync::mpsc` measured in the same run. (Cross-process latency and throughput against
//! other transports are the benchmark suite of a later issue.)

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

criterion_group!(benches, send_then_receive);
criterion_main!(benches);
