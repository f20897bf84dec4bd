//! `baton bench`: a short run of the transport comparison (see `baton::bench`).

use baton_cli::transports::{percentile, round_trips, throughput, Transport};
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
    rtt_p999_us: Option<f64>,
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

pub fn run(
    case: Duration,
    rounds: usize,
    transports: &[String],
    sizes: &[u64],
    json: bool,
    svg: Option<&std::path::Path>,
) -> io::Result<()> {
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
             payload copied in and out, sequence numbers checked; {rounds} interleaved rounds"
        );
        println!(
            "{:<16} {:>6} {:<10} {:>9} {:>9} {:>9} {:>12} {:>9} {:>12} {:>8}",
            "transport",
            "size",
            "mode",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "msg/s 1->1",
            "MB/s",
            "msg/s 4->1",
            "p50/baton"
        );
    }
    // Rounds interleave every case, so that a slow moment of this shared machine falls on all
    // transports alike; round trips are pooled and throughputs take the median.
    let mut acc: Vec<Vec<Acc>> = sizes
        .iter()
        .map(|_| chosen.iter().map(|_| Acc::default()).collect())
        .collect();
    'rounds: for _ in 0..rounds.max(1) {
        for (si, &size) in sizes.iter().enumerate() {
            for (ti, &t) in chosen.iter().enumerate() {
                if started.elapsed() > BUDGET {
                    eprintln!("baton bench: stopping early to stay within 60 s");
                    break 'rounds;
                }
                acc[si][ti].add(measure(&exe, t, size, case));
            }
        }
    }
    let mut all_rows = Vec::new();
    for (si, &size) in sizes.iter().enumerate() {
        let mut rows: Vec<Row> = chosen
            .iter()
            .zip(acc[si].drain(..))
            .map(|(&t, a)| a.row(t, size))
            .collect();
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
                println!("{}", crate::format::with_schema(r)?);
            } else {
                print_row(r);
            }
        }
        all_rows.extend(rows);
    }
    if let Some(path) = svg {
        std::fs::write(path, chart(&all_rows))?;
    }
    Ok(())
}

/// A bar chart of the p50 round trips, log scale, one group per size.
fn chart(rows: &[Row]) -> String {
    let (left, width, bar, gap) = (170.0, 560.0, 14.0, 22.0);
    let measured: Vec<&Row> = rows.iter().filter(|r| r.rtt_p50_us.is_some()).collect();
    let (lo, hi) = (0.1f64.log10(), 1000f64.log10());
    let x = |us: f64| left + (us.max(0.1).log10() - lo) / (hi - lo) * width;
    let mut y = 40.0;
    let mut body = String::new();
    let mut last_size = 0;
    for r in &measured {
        if r.size != last_size {
            y += gap;
            body += &format!(
                "<text x='10' y='{y}' font-weight='bold'>{} B</text>\n",
                r.size
            );
            y += 6.0;
            last_size = r.size;
        }
        let p50 = r.rtt_p50_us.unwrap_or(0.0);
        let color = if r.transport.starts_with("baton") {
            "#2a6f97"
        } else {
            "#aaaaaa"
        };
        body += &format!(
            "<text x='{}' y='{}' text-anchor='end' font-size='11'>{}</text>\
             <rect x='{left}' y='{}' width='{:.1}' height='{bar}' fill='{color}'/>\
             <text x='{:.1}' y='{}' font-size='11'>{p50:.2} µs</text>\n",
            left - 6.0,
            y + 11.0,
            r.transport,
            y,
            x(p50) - left,
            x(p50) + 4.0,
            y + 11.0
        );
        y += bar + 3.0;
    }
    let mut axis = String::new();
    for us in [0.1, 1.0, 10.0, 100.0, 1000.0] {
        axis += &format!(
            "<line x1='{0:.1}' y1='30' x2='{0:.1}' y2='{1}' stroke='#ddd'/>\
             <text x='{0:.1}' y='24' font-size='10' text-anchor='middle'>{us} µs</text>\n",
            x(us),
            y + 5.0
        );
    }
    format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif'>\n\
         <text x='10' y='14' font-size='12'>round trip p50, two processes on two CPUs (log scale)</text>\n\
         {axis}{body}</svg>\n",
        left + width + 90.0,
        y + 10.0
    )
}

/// One case's results over the rounds.
#[derive(Default)]
struct Acc {
    rtts: Vec<Duration>,
    rates: Vec<f64>,
    rates4: Vec<f64>,
    error: Option<String>,
}

struct Measured {
    rtts: Vec<Duration>,
    rate: Option<f64>,
    rate4: Option<f64>,
    error: Option<String>,
}

impl Acc {
    fn add(&mut self, m: Measured) {
        self.rtts.extend(m.rtts);
        self.rates.extend(m.rate);
        self.rates4.extend(m.rate4);
        if m.error.is_some() {
            self.error = m.error;
        }
    }

    fn row(mut self, t: Transport, size: usize) -> Row {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        self.rtts.sort_unstable();
        let has = !self.rtts.is_empty();
        let rate = median(&mut self.rates);
        Row {
            transport: t.name(),
            size,
            mode: t.mode(),
            rtt_p50_us: has.then(|| us(percentile(&self.rtts, 0.5))),
            rtt_p99_us: has.then(|| us(percentile(&self.rtts, 0.99))),
            rtt_p999_us: has.then(|| us(percentile(&self.rtts, 0.999))),
            round_trips: self.rtts.len(),
            msgs_per_sec: rate,
            payload_mb_per_sec: rate.map(|r| r * size as f64 / 1e6),
            msgs_per_sec_4_senders: median(&mut self.rates4),
            p50_ratio_to_baton: None,
            error: self.error,
        }
    }
}

fn measure(exe: &std::path::Path, t: Transport, size: usize, case: Duration) -> Measured {
    let mut m = Measured {
        rtts: Vec::new(),
        rate: None,
        rate4: None,
        error: None,
    };
    match round_trips(exe, t, size, 200, 1_000_000, case) {
        Ok(v) => m.rtts = v,
        Err(e) => {
            m.error = Some(e.to_string());
            return m;
        }
    }
    // Enough messages for about `case` at a rate well above one per round trip.
    let per_rtt = percentile(&m.rtts, 0.5).as_secs_f64().max(1e-7);
    let count = ((case.as_secs_f64() / per_rtt) * 4.0).clamp(2_000.0, 2_000_000.0) as u64;
    if !t.measures_throughput() {
        return m;
    }
    match throughput(exe, t, size, 1, count) {
        Ok(rate) => m.rate = Some(rate),
        Err(e) => m.error = Some(format!("throughput: {e}")),
    }
    if t.many_senders() && size <= 4096 {
        match throughput(exe, t, size, 4, count / 4) {
            Ok(rate) => m.rate4 = Some(rate),
            Err(e) => m.error = Some(format!("4 senders: {e}")),
        }
    }
    m
}

fn print_row(r: &Row) {
    let f = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    println!(
        "{:<16} {:>6} {:<10} {:>9} {:>9} {:>9} {:>12} {:>9} {:>12} {:>8}{}",
        r.transport,
        r.size,
        r.mode,
        f(r.rtt_p50_us, 2),
        f(r.rtt_p99_us, 2),
        f(r.rtt_p999_us, 2),
        f(r.msgs_per_sec, 0),
        f(r.payload_mb_per_sec, 1),
        f(r.msgs_per_sec_4_senders, 0),
        f(r.p50_ratio_to_baton, 2),
        r.error
            .as_ref()
            .map_or(String::new(), |e| format!("  ({e})"))
    );
}

/// One case of a process-count sweep (`--fan-in` or `--consumers`), as printed or as a JSON
/// line (whose first field is named as the table's first column: `senders`, `consumers`).
#[derive(Debug, serde::Serialize)]
struct SweepRow {
    transport: &'static str,
    msgs_per_sec: Option<f64>,
    /// Over the first transport's rate with as many processes (baton's, by default).
    ratio_to_first: Option<f64>,
    /// Over this transport's own rate with the fewest processes measured.
    ratio_to_own_fewest: Option<f64>,
    error: Option<String>,
}

/// Measures `measure(processes, transport)` (messages per second) for every process count and
/// transport, `rounds` times interleaved, and prints the median of each with its ratios:
/// a table headed by `title` (its first column named `column`), or JSON lines (with the fields
/// of `extra` added).
/// How a sweep's output is labelled: the table's title line, its first column's name (and the
/// JSON field of the process count), and fields added to each JSON line.
struct Labels<'a> {
    title: String,
    column: &'a str,
    extra: &'a [(&'a str, serde_json::Value)],
}

fn sweep(
    Labels {
        title,
        column,
        extra,
    }: Labels<'_>,
    counts: &[u32],
    chosen: &[Transport],
    rounds: usize,
    json: bool,
    mut measure: impl FnMut(u32, Transport) -> io::Result<f64>,
) -> io::Result<()> {
    let mut rates = vec![vec![Vec::new(); chosen.len()]; counts.len()];
    let mut errors = vec![vec![None; chosen.len()]; counts.len()];
    for _ in 0..rounds.max(1) {
        for (ci, &n) in counts.iter().enumerate() {
            for (ti, &t) in chosen.iter().enumerate() {
                match measure(n.max(1), t) {
                    Ok(r) => rates[ci][ti].push(r),
                    Err(e) => errors[ci][ti] = Some(e.to_string()),
                }
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let table: Vec<Vec<Option<f64>>> = rates
        .iter_mut()
        .map(|row| row.iter_mut().map(median).collect())
        .collect();
    if !json {
        println!("{title}");
        println!(
            "{column:>9} {:<16} {:>12} {:>10} {:>12}",
            "transport", "msg/s", "/first", "/own fewest"
        );
    }
    for (ci, &n) in counts.iter().enumerate() {
        for (ti, &t) in chosen.iter().enumerate() {
            let rate = table[ci][ti];
            let row = SweepRow {
                transport: t.name(),
                msgs_per_sec: rate,
                ratio_to_first: rate.zip(table[ci][0]).map(|(r, f)| r / f),
                ratio_to_own_fewest: rate.zip(table[0][ti]).map(|(r, f)| r / f),
                error: errors[ci][ti].take(),
            };
            if json {
                let mut line = serde_json::Map::new();
                line.insert("schema".into(), crate::format::SCHEMA.into());
                line.insert(column.into(), n.into());
                line.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
                if let serde_json::Value::Object(fields) =
                    serde_json::to_value(&row).map_err(io::Error::other)?
                {
                    line.extend(fields);
                }
                println!("{}", serde_json::Value::Object(line));
            } else {
                let f = |v: Option<f64>, d: usize| v.map_or("-".into(), |v| format!("{v:.d$}"));
                println!(
                    "{:>9} {:<16} {:>12} {:>10} {:>12}{}",
                    n,
                    row.transport,
                    f(row.msgs_per_sec, 0),
                    f(row.ratio_to_first, 2),
                    f(row.ratio_to_own_fewest, 2),
                    row.error.map_or(String::new(), |e| format!("  error: {e}"))
                );
            }
        }
    }
    Ok(())
}

/// The transports named (or `default`), each checked with `fits`; `what` says what they must
/// have, for the error.
fn transports_named(
    names: &[String],
    default: &[&str],
    fits: impl Fn(Transport) -> bool,
    what: &str,
) -> io::Result<Vec<Transport>> {
    let names: Vec<String> = if names.is_empty() {
        default.iter().map(|n| n.to_string()).collect()
    } else {
        names.to_vec()
    };
    names
        .iter()
        .map(|n| {
            Transport::from_name(n)
                .filter(|&t| fits(t))
                .ok_or_else(|| io::Error::other(format!("{n:?} is no transport {what}")))
        })
        .collect()
}

/// `baton bench --fan-in N,...`: fan-in throughput, 64-byte messages, median of `rounds`
/// interleaved rounds per case.
pub fn fan_in(
    procs: &[u32],
    messages: u64,
    rounds: usize,
    transports: &[String],
    json: bool,
) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let chosen = transports_named(
        transports,
        &["baton-blocking", "posix-mq"],
        Transport::many_senders,
        "with many senders",
    )?;
    sweep(
        Labels {
            title: format!(
                "baton bench --fan-in: N sender processes -> 1 receiver (CPU 1), 64-byte \
                 messages, {messages} messages a case, median of {rounds} rounds"
            ),
            column: "senders",
            extra: &[],
        },
        procs,
        &chosen,
        rounds,
        json,
        |n, t| baton_cli::transports::fan_in(&exe, t, 64, n, (messages / n as u64).max(1)),
    )
}

/// `baton bench --consumers N,...`: competing-consumer throughput, 64-byte messages, each
/// consumer process sleeping `work` per message; median of `rounds` interleaved rounds.
pub fn consumers(
    counts: &[u32],
    messages: u64,
    work: std::time::Duration,
    rounds: usize,
    transports: &[String],
    json: bool,
) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let chosen = transports_named(
        transports,
        &["baton-blocking", "posix-mq", "sysv-mq"],
        baton_cli::transports::many_consumers,
        "with competing consumers (baton-blocking, posix-mq, sysv-mq)",
    )?;
    let work_us = work.as_micros() as u64;
    sweep(
        Labels {
            title: format!(
                "baton bench --consumers: 1 sender -> N consumer processes on one queue, \
                 64-byte messages, {work_us} us asleep per message, {messages} messages a case, \
                 median of {rounds} rounds"
            ),
            column: "consumers",
            extra: &[("work_us", work_us.into())],
        },
        counts,
        &chosen,
        rounds,
        json,
        |n, t| baton_cli::transports::pool_throughput(&exe, t, 64, n, messages, work_us),
    )?;
    if work_us == 0 {
        return Ok(());
    }
    // What the kernel allows: N sleepers and no messages. With more consumers than CPUs,
    // sleeping and waking costs CPU that they share, so N consumers are not N times one.
    let mut floor = Vec::new();
    for &n in counts {
        let mut r: Vec<f64> = (0..rounds.max(1))
            .map(|_| baton_cli::transports::sleep_floor(n.max(1), messages, work_us))
            .collect::<io::Result<_>>()?;
        r.sort_by(f64::total_cmp);
        floor.push((n, r[r.len() / 2]));
    }
    let fewest = floor[0].1;
    if json {
        for (n, rate) in floor {
            println!(
                "{}",
                serde_json::json!({
                    "schema": crate::format::SCHEMA, "consumers": n, "work_us": work_us,
                    "transport": "sleep-floor", "msgs_per_sec": rate,
                    "ratio_to_own_fewest": rate / fewest,
                })
            );
        }
    } else {
        println!(
            "floor: N threads that only sleep {work_us} us per message, no queue (what the \
             kernel allows; /own fewest is the best any transport's can be)"
        );
        for (n, rate) in floor {
            println!(
                "{n:>9} {:<16} {rate:>12.0} {:>10} {:>12.2}",
                "sleep-floor",
                "-",
                rate / fewest
            );
        }
    }
    Ok(())
}
