//! `baton bench`: a short run of the transport comparison (see `baton::bench`).

use baton::bench::{percentile, round_trips, throughput, Transport};
use std::io;
use std::time::{Duration, Instant};

/// One transport at one size.
#[derive(Debug, serde::Serialize)]
struct Row {
    transport: &'static str,
    size: usize,
    mode: &'static str,
    rtt_p50_us: Option<f64>,
    rtt_p99_us: Option<f64>,
    round_trips: usize,
    msgs_per_sec: Option<f64>,
    payload_mb_per_sec: Option<f64>,
    msgs_per_sec_4_senders: Option<f64>,
    /// p50 round trip over baton's (polled rows against baton-polled, others against
    /// baton-blocking) at the same size.
    p50_ratio_to_baton: Option<f64>,
    error: Option<String>,
}

const BUDGET: Duration = Duration::from_secs(55);

pub fn run(case: Duration, transports: &[String], sizes: &[u64], json: bool) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let chosen: Vec<Transport> = if transports.is_empty() {
        Transport::all()
    } else {
        transports
            .iter()
            .map(|n| {
                Transport::from_name(n).ok_or_else(|| {
                    io::Error::other(format!(
                        "unknown transport {n:?}; known: {}",
                        Transport::all()
                            .iter()
                            .map(|t| t.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
            })
            .collect::<io::Result<_>>()?
    };
    let sizes: Vec<usize> = if sizes.is_empty() {
        vec![64, 4096, 65536]
    } else {
        sizes.iter().map(|&s| s.max(8) as usize).collect()
    };
    let started = Instant::now();
    if !json {
        println!(
            "baton bench: round trips and one-way throughput across two processes (CPU 0 and 1), \
             payload copied in and out, sequence numbers checked"
        );
        println!(
            "{:<16} {:>6} {:<10} {:>9} {:>9} {:>12} {:>9} {:>12} {:>8}",
            "transport",
            "size",
            "mode",
            "p50 µs",
            "p99 µs",
            "msg/s 1->1",
            "MB/s",
            "msg/s 4->1",
            "p50/baton"
        );
    }
    for &size in &sizes {
        let mut rows = Vec::new();
        for &t in &chosen {
            if started.elapsed() > BUDGET {
                eprintln!("baton bench: stopping early to stay within 60 s");
                break;
            }
            rows.push(measure(&exe, t, size, case));
        }
        let base = |mode: &str| {
            let name = if mode == "polled" {
                "baton-polled"
            } else {
                "baton-blocking"
            };
            rows.iter()
                .find(|r| r.transport == name)
                .and_then(|r| r.rtt_p50_us)
        };
        let ratios: Vec<Option<f64>> = rows
            .iter()
            .map(|r| Some(r.rtt_p50_us? / base(r.mode)?))
            .collect();
        for (r, ratio) in rows.iter_mut().zip(ratios) {
            r.p50_ratio_to_baton = ratio;
            if json {
                println!("{}", serde_json::to_string(r).map_err(io::Error::other)?);
            } else {
                print_row(r);
            }
        }
    }
    Ok(())
}

fn measure(exe: &std::path::Path, t: Transport, size: usize, case: Duration) -> Row {
    let mut row = Row {
        transport: t.name(),
        size,
        mode: t.mode(),
        rtt_p50_us: None,
        rtt_p99_us: None,
        round_trips: 0,
        msgs_per_sec: None,
        payload_mb_per_sec: None,
        msgs_per_sec_4_senders: None,
        p50_ratio_to_baton: None,
        error: None,
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    match round_trips(exe, t, size, 200, 1_000_000, case) {
        Ok(v) => {
            row.round_trips = v.len();
            row.rtt_p50_us = Some(us(percentile(&v, 0.5)));
            row.rtt_p99_us = Some(us(percentile(&v, 0.99)));
        }
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    }
    // Enough messages for about `case` at a rate well above one per round trip.
    let per_rtt = row.rtt_p50_us.unwrap_or(10.0) * 1e-6;
    let count = ((case.as_secs_f64() / per_rtt) * 4.0).clamp(2_000.0, 2_000_000.0) as u64;
    match throughput(exe, t, size, 1, count) {
        Ok(rate) => {
            row.msgs_per_sec = Some(rate);
            row.payload_mb_per_sec = Some(rate * size as f64 / 1e6);
        }
        Err(e) => row.error = Some(format!("throughput: {e}")),
    }
    if t.many_senders() && size <= 4096 {
        match throughput(exe, t, size, 4, count / 4) {
            Ok(rate) => row.msgs_per_sec_4_senders = Some(rate),
            Err(e) => row.error = Some(format!("4 senders: {e}")),
        }
    }
    row
}

fn print_row(r: &Row) {
    let f = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    println!(
        "{:<16} {:>6} {:<10} {:>9} {:>9} {:>12} {:>9} {:>12} {:>8}{}",
        r.transport,
        r.size,
        r.mode,
        f(r.rtt_p50_us, 2),
        f(r.rtt_p99_us, 2),
        f(r.msgs_per_sec, 0),
        f(r.payload_mb_per_sec, 1),
        f(r.msgs_per_sec_4_senders, 0),
        f(r.p50_ratio_to_baton, 2),
        r.error
            .as_ref()
            .map_or(String::new(), |e| format!("  ({e})"))
    );
}
