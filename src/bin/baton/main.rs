//! `baton`: create, inspect and use baton queues from the shell.
//!
//! Exit status: 0 success, 1 error, 2 bad usage, 3 timed out.

use baton::{
    Attributes, Domain, Message, OwnError, Queue, ReceiverOptions, RecvError, SendError, Status,
};
use clap::{Parser, Subcommand};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering as Local}; // facade-exempt: process-local flags
use std::time::Duration;

mod bench;

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Crash-safe shared-memory message queues"
)]
struct Cli {
    /// Namespace of the queues.
    #[arg(long, global = true, env = "BATON_DOMAIN", default_value = "default")]
    domain: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a queue (or check that it exists with these attributes).
    Create {
        name: String,
        /// Byte budget per priority: one size for all four, or four sizes `P0,P1,P2,P3`
        /// (suffixes K, M, G are powers of 1024).
        #[arg(long, value_parser = parse_capacity)]
        capacity: Option<[u64; 4]>,
        /// Largest payload in bytes (suffixes K, M, G).
        #[arg(long, value_parser = parse_size)]
        max_message: Option<u64>,
        /// File mode, octal (default 600), applied exactly whatever the umask.
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
        /// Delete the queue, with its messages, once it has had no owner for this long
        /// (seconds; 0: as soon as its owner closes or dies with no standby waiting).
        /// Default: keep it until `baton rm`.
        #[arg(long, value_parser = parse_seconds)]
        retention: Option<Duration>,
    },
    /// Send each MESSAGE argument, or each line of standard input, as one message.
    Send {
        name: String,
        /// 0 (highest) to 3.
        #[arg(long, short, default_value_t = 3)]
        priority: u8,
        /// User message type.
        #[arg(
            long = "type",
            short = 't',
            default_value_t = 0,
            allow_negative_numbers = true
        )]
        msg_type: i64,
        /// User message version.
        #[arg(long, default_value_t = 0)]
        version: u32,
        /// Give up if a message waits longer than this for space (seconds).
        #[arg(long, value_parser = parse_seconds)]
        timeout: Option<Duration>,
        messages: Vec<String>,
    },
    /// Own the queue and write each payload as one line to standard output. Each message is
    /// acknowledged only after its line is written and flushed; with --json each line is an
    /// object that also says whether the message is a redelivery.
    Recv {
        name: String,
        /// Exit 0 after this many messages.
        #[arg(long, short = 'n')]
        count: Option<u64>,
        /// Give up (exit 3) when no message arrives for this long (seconds).
        #[arg(long, value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// If the queue is owned, wait to own it (until its owner closes or dies).
        #[arg(long)]
        standby: bool,
        /// With --standby: give up (exit 3) if the queue is not ours within this long (seconds).
        #[arg(long, value_parser = parse_seconds, requires = "standby")]
        standby_timeout: Option<Duration>,
        /// Discard the messages waiting when ownership is taken.
        #[arg(long)]
        empty: bool,
    },
    /// List the domain's queues (removing those whose retention has run out).
    Ls,
    /// Show a queue's status.
    Stat {
        name: String,
        /// Report the owner as stalled when the message it would take next has waited this
        /// long (seconds).
        #[arg(long, value_parser = parse_seconds, default_value = "5")]
        stall_after: Duration,
    },
    /// Remove a queue, with its messages; processes that have it open get "removed" errors.
    Rm { name: String },
    /// Remove the domain's queues whose retention has run out, and temporary files of dead
    /// processes.
    Gc,
    /// Compare baton with pipes, Unix sockets, POSIX and System V message queues and bare
    /// shared memory (and iceoryx2, if built with the `iceoryx2` feature), across two
    /// processes on two CPUs: round-trip latency and one-way throughput.
    Bench {
        /// Run each case for about this long per round (seconds); the whole run stays under
        /// 60 s.
        #[arg(long, value_parser = parse_seconds, default_value = "0.1")]
        case_seconds: Duration,
        /// Interleaved rounds over all cases.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Also write a bar chart of the round trips to this SVG file.
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
        /// Only these transports (comma-separated names, as printed).
        #[arg(long, value_delimiter = ',')]
        transports: Vec<String>,
        /// Only these payload sizes in bytes (comma-separated; default 64,4096,65536).
        #[arg(long, value_delimiter = ',', value_parser = parse_size)]
        sizes: Vec<u64>,
        /// Instead, measure fan-in: this many sender processes each (comma-separated, e.g.
        /// 1,4,16,64,256) sending 64-byte messages into one receiver, baton against POSIX
        /// message queues (or --transports), with the ratio of each.
        #[arg(long, value_delimiter = ',')]
        fan_in: Vec<u32>,
        /// Messages in each fan-in case, split among its senders.
        #[arg(long, default_value_t = 400_000)]
        fan_in_messages: u64,
    },
    /// A sender process of `baton bench --fan-in` (internal).
    #[command(hide = true)]
    BenchSend {
        transport: String,
        id: String,
        size: usize,
        #[arg(long)]
        sender: u32,
        #[arg(long)]
        count: u64,
    },
    /// The peer process of `baton bench` (internal).
    #[command(hide = true)]
    BenchServe {
        transport: String,
        id: String,
        size: usize,
        #[arg(long)]
        senders: Option<u32>,
        #[arg(long)]
        count: Option<u64>,
    },
}

/// Which of the standard descriptors 0, 1 and 2 were closed when the process started (bits),
/// read before Rust's runtime quietly reopens closed ones onto `/dev/null`.
static CLOSED_AT_START: AtomicU32 = AtomicU32::new(0);

extern "C" fn look_at_standard_descriptors() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            CLOSED_AT_START.fetch_or(1 << fd, Local::Relaxed);
        }
    }
}

/// Runs `look_at_standard_descriptors` before `main`, and so before the runtime's own start-up.
#[used]
#[link_section = ".init_array"]
static LOOK_BEFORE_MAIN: extern "C" fn() = look_at_standard_descriptors;

/// Refuses to run with standard output closed: output would go nowhere (the runtime puts
/// `/dev/null` there), and `recv` would acknowledge messages written nowhere.
fn standard_descriptors() -> Result<(), Failure> {
    let closed = CLOSED_AT_START.load(Local::Relaxed);
    if closed & 0b010 != 0 {
        return Err(Failure {
            message: "standard output is closed; refusing to run (give it a file or /dev/null)"
                .into(),
            code: 1,
        });
    }
    Ok(())
}

/// The signal that asked `recv` to stop (0: none yet): SIGINT, SIGTERM or SIGHUP end it
/// cleanly between messages, as a close, not as a crash (see `catch_stop_signals`).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Local::Relaxed);
}

/// From now on SIGINT, SIGTERM and SIGHUP set `STOP_SIGNAL` instead of killing the process,
/// and a broken pipe is an error from `write` instead of a SIGPIPE.
fn catch_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a handler that only stores to an atomic (async-signal-safe); no SA_RESTART,
        // so a blocking call returns early and the loop looks at the flag.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    // SAFETY: ignoring SIGPIPE: writes to a closed pipe then fail with EPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// How long `recv` waits at a time, so that it notices a stop signal promptly.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// How long `recv --standby` waits for the owner lock at a time, for the same reason.
const STANDBY_SLICE: Duration = Duration::from_millis(200);

/// The transport of a name given to an internal bench command (a usage error otherwise).
fn transport_named(name: &str) -> Result<baton::bench::Transport, Failure> {
    baton::bench::Transport::from_name(name).ok_or_else(|| Failure {
        message: format!("unknown transport {name:?}"),
        code: 2,
    })
}

struct Failure {
    message: String,
    code: u8,
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            message: e.to_string(),
            code: 1,
        }
    }
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away (`| head`).
    // (`recv` handles the broken pipe itself: see `Stop`.)
    // SAFETY: resetting a signal's disposition to its default before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if let Err(f) = standard_descriptors() {
        eprintln!("baton: error: {}", f.message);
        return ExitCode::from(f.code);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("baton: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let domain = Domain::new(&cli.domain)?;
    let json = cli.json;
    match cli.command {
        Command::Create {
            name,
            capacity,
            max_message,
            mode,
            retention,
        } => {
            let defaults = Attributes::default();
            let max_message = match max_message {
                None => defaults.max_message,
                Some(m) => u32::try_from(m).map_err(|_| Failure {
                    message: format!("max message {m} is out of range"),
                    code: 1,
                })?,
            };
            let attrs = Attributes {
                capacity: capacity.unwrap_or(defaults.capacity),
                max_message,
                mode: mode.unwrap_or(defaults.mode),
                retention,
                ..defaults
            };
            let q = Queue::create(&domain, &name, &attrs)?;
            let st = q.status();
            if json {
                print_json(&st)?;
            } else {
                println!(
                    "queue {name} in domain {domain}: {}",
                    describe_attributes(&st.attributes)
                );
            }
        }
        Command::Send {
            name,
            priority,
            msg_type,
            version,
            timeout,
            messages,
        } => {
            let q = Queue::open(&domain, &name)?;
            let tx = q
                .sender()
                .with_priority(priority)?
                .with_type(msg_type)
                .with_version(version);
            let send = |payload: &[u8]| -> Result<(), Failure> {
                let r = match timeout {
                    Some(t) => tx.send_timeout(payload, t),
                    None => tx.send(payload),
                };
                r.map_err(|e| match e {
                    SendError::Timeout => Failure {
                        message: format!(
                            "timed out waiting for space in queue {name} (priority {priority})"
                        ),
                        code: 3,
                    },
                    e => e.into(),
                })
            };
            let mut sent = 0u64;
            if messages.is_empty() {
                let stdin = std::io::stdin();
                let mut line = Vec::new();
                let mut input = stdin.lock();
                loop {
                    line.clear();
                    if input.read_until(b'\n', &mut line)? == 0 {
                        break;
                    }
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    send(&line)?;
                    sent += 1;
                }
            } else {
                for m in &messages {
                    send(m.as_bytes())?;
                    sent += 1;
                }
            }
            if json {
                print_json(&serde_json::json!({ "queue": name, "sent": sent }))?;
            }
        }
        Command::Recv {
            name,
            count,
            timeout,
            standby,
            standby_timeout,
            empty,
        } => {
            let q = Queue::open(&domain, &name)?;
            // Signals end `recv` cleanly from here on, standby wait included: it waits in
            // short slices so that it sees them.
            catch_stop_signals();
            let stopped = |received: u64| {
                let stop = STOP_SIGNAL.load(Local::Relaxed);
                (stop != 0).then(|| Failure {
                    message: format!("stopped by signal {stop} after {received} messages"),
                    code: 128 + stop as u8,
                })
            };
            let standby_deadline = standby_timeout.map(|t| std::time::Instant::now() + t);
            let rx = loop {
                if let Some(f) = stopped(0) {
                    return Err(f);
                }
                let slice = standby.then(|| {
                    standby_deadline.map_or(STANDBY_SLICE, |d| {
                        d.saturating_duration_since(std::time::Instant::now())
                            .min(STANDBY_SLICE)
                    })
                });
                match q.receiver_with(ReceiverOptions {
                    standby,
                    timeout: slice,
                    empty,
                }) {
                    Ok(rx) => break rx,
                    Err(OwnError::Timeout { .. })
                        if standby_deadline.is_none_or(|d| std::time::Instant::now() < d) =>
                    {
                        continue
                    }
                    Err(e @ OwnError::Timeout { .. }) => {
                        return Err(Failure {
                            message: e.to_string(),
                            code: 3,
                        })
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let mut rx = rx;
            if rx.took_over() {
                eprintln!(
                    "baton: took queue {name} over from a dead owner (epoch {})",
                    rx.epoch()
                );
            }
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut received = 0u64;
            let deadline = timeout.map(|t| std::time::Instant::now() + t);
            while count.is_none_or(|c| received < c) {
                if let Some(f) = stopped(received) {
                    // Closing the receiver is a clean hand-over: nothing is in flight, the next
                    // owner takes no dead owner's queue, a retention-0 queue goes.
                    drop(rx);
                    return Err(f);
                }
                let slice = match deadline {
                    Some(d) => d
                        .saturating_duration_since(std::time::Instant::now())
                        .min(STOP_CHECK),
                    None => STOP_CHECK,
                };
                let msg = match rx.recv_timeout(slice) {
                    Err(RecvError::Timeout)
                        if deadline.is_none_or(|d| std::time::Instant::now() < d) =>
                    {
                        continue
                    }
                    other => other,
                };
                let msg = msg.map_err(|e| match e {
                    RecvError::Timeout => Failure {
                        message: format!(
                            "timed out after {:?} waiting for a message on queue {name} ({received} received{})",
                            timeout.unwrap_or_default(),
                            count.map_or(String::new(), |c| format!(" of {c}"))
                        ),
                        code: 3,
                    },
                    e => e.into(),
                })?;
                if let Err(e) = write_message(&mut out, &msg, json) {
                    // Not written: the message stays in the queue, delivered again (flagged)
                    // to the next owner.
                    let _ = msg.release();
                    return Err(Failure {
                        message: format!(
                            "cannot write message {} to standard output: {e}; it stays in the queue",
                            received + 1
                        ),
                        code: 1,
                    });
                }
                // Only now, with the line written and flushed, does the message leave the queue.
                msg.ack()?;
                received += 1;
            }
        }
        Command::Ls => {
            let rows = Queue::list(&domain)?;
            let stale = Queue::stale_files(&domain)?;
            if json {
                let mut items: Vec<_> = rows
                    .iter()
                    .map(|e| match &e.status {
                        Ok(st) => serde_json::to_value(st).unwrap_or_default(),
                        Err(err) => serde_json::json!({ "file": e.file, "error": err.to_string() }),
                    })
                    .collect();
                items.extend(stale.iter().map(|(file, pid)| {
                    serde_json::json!({ "file": file, "stale": format!("left by dead pid {pid} while creating a queue") })
                }));
                print_json(&items)?;
            } else {
                println!(
                    "{:<24} {:>7} {:>7} {:>7} {:>7} {:>10} {:>8}",
                    "NAME", "P0", "P1", "P2", "P3", "USED", "OWNER"
                );
                for e in &rows {
                    match &e.status {
                        Ok(st) => {
                            let used: u64 = st.lanes.iter().map(|l| l.used).sum();
                            println!(
                                "{:<24} {:>7} {:>7} {:>7} {:>7} {:>10} {:>8}",
                                st.name,
                                st.lanes[0].messages,
                                st.lanes[1].messages,
                                st.lanes[2].messages,
                                st.lanes[3].messages,
                                used,
                                match (st.owner_pid, st.dead_owner_pid) {
                                    (Some(p), _) => p.to_string(),
                                    (None, Some(p)) => format!("dead:{p}"),
                                    (None, None) => "-".to_string(),
                                }
                            );
                        }
                        Err(err) => println!("{:<24} unusable: {err}", e.file.display()),
                    }
                }
                for (file, pid) in &stale {
                    println!(
                        "{:<24} stale: left by dead pid {pid} while creating a queue (baton gc removes it)",
                        file.display()
                    );
                }
            }
        }
        Command::Stat { name, stall_after } => {
            let st = Queue::open(&domain, &name)?.status();
            let stalled = st.owner_stalled(stall_after);
            if json {
                let mut v = serde_json::to_value(&st)?;
                v["owner_stalled"] = serde_json::json!(stalled);
                print_json(&v)?;
            } else {
                print_status(&st, stalled.then_some(stall_after));
            }
        }
        Command::Bench {
            rounds,
            transports,
            fan_in,
            fan_in_messages,
            ..
        } if !fan_in.is_empty() => {
            bench::fan_in(&fan_in, fan_in_messages, rounds, &transports, json)?
        }
        Command::Bench {
            case_seconds,
            rounds,
            transports,
            sizes,
            svg,
            ..
        } => bench::run(
            case_seconds,
            rounds,
            &transports,
            &sizes,
            json,
            svg.as_deref(),
        )?,
        Command::BenchSend {
            transport,
            id,
            size,
            sender,
            count,
        } => {
            let t = transport_named(&transport)?;
            baton::bench::send_fan_in(t, &baton::bench::Names { id }, size, sender, count)?;
        }
        Command::BenchServe {
            transport,
            id,
            size,
            senders,
            count,
        } => {
            let t = transport_named(&transport)?;
            let role = match (senders, count) {
                (Some(senders), Some(count)) => baton::bench::Role::Sink { senders, count },
                _ => baton::bench::Role::Echo,
            };
            baton::bench::serve(t, &baton::bench::Names { id }, size, role)?;
        }
        Command::Gc => {
            let removed = Queue::gc(&domain)?;
            if json {
                print_json(&serde_json::json!({ "removed": removed }))?;
            } else {
                for f in &removed {
                    println!("removed {}", f.display());
                }
            }
        }
        Command::Rm { name } => {
            Queue::remove(&domain, &name)?;
            if json {
                print_json(&serde_json::json!({ "queue": name, "removed": true }))?;
            }
        }
    }
    Ok(())
}

fn write_message(out: &mut impl Write, msg: &Message, json: bool) -> std::io::Result<()> {
    if json {
        let v = serde_json::json!({
            "priority": msg.priority,
            "type": msg.msg_type,
            "version": msg.version,
            "sender_pid": msg.sender_pid,
            "sent_ns": msg.sent_ns,
            "len": msg.len(),
            "redelivered": msg.redelivered,
            "payload": String::from_utf8_lossy(msg.payload()),
        });
        writeln!(out, "{v}")?;
    } else {
        out.write_all(msg.payload())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn print_json(v: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(v)?;
    println!("{text}");
    Ok(())
}

fn describe_attributes(a: &Attributes) -> String {
    format!(
        "capacity {} / {} / {} / {} bytes, max message {} bytes, mode {:03o}, retention {}",
        a.capacity[0],
        a.capacity[1],
        a.capacity[2],
        a.capacity[3],
        a.max_message,
        a.mode,
        a.retention
            .map_or("none".to_string(), |d| format!("{} s", d.as_secs_f64()))
    )
}

fn print_status(st: &Status, stalled: Option<Duration>) {
    let secs = |ns: u64| ns as f64 / 1e9;
    println!("queue      {} (domain {})", st.name, st.domain);
    println!("attributes {}", describe_attributes(&st.attributes));
    let owner = match (st.owner_pid, stalled) {
        (None, _) => "none".to_string(),
        (Some(p), None) => format!("pid {p}"),
        (Some(p), Some(after)) => format!(
            "pid {p} STALLED: the message it would take next has waited {:.1} s (threshold {} s)",
            secs(st.owner_stalled_ns.unwrap_or(0)),
            after.as_secs_f64()
        ),
    };
    println!("owner      {owner}");
    println!("standbys   {}", st.standbys);
    println!("epoch      {} ({} takeovers)", st.epoch, st.takeovers);
    println!(
        "messages   {} sent, {} received, {} redelivered, {} abandoned, {} rejected as full",
        st.sent, st.received, st.redelivered, st.abandoned, st.rejected_full
    );
    if st.removed {
        println!("REMOVED    this queue has been removed");
    }
    println!("priority   capacity       used   messages    unacked  in-flight");
    for (p, l) in st.lanes.iter().enumerate() {
        println!(
            "{p:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
            l.capacity, l.used, l.messages, l.unacknowledged, l.in_flight
        );
    }
    for f in &st.files {
        println!("file       {} ({} bytes)", f.display(), st.size);
    }
    if st.file_size.is_some_and(|s| s != st.size) {
        println!(
            "WARNING    the file is {} bytes: truncated or extended by someone",
            st.file_size.unwrap_or(0)
        );
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size in bytes (e.g. 65536, 64K, 1M)"))
}

fn parse_capacity(s: &str) -> Result<[u64; 4], String> {
    let parts: Vec<&str> = s.split(',').collect();
    match parts.len() {
        1 => Ok([parse_size(parts[0])?; 4]),
        4 => Ok([
            parse_size(parts[0])?,
            parse_size(parts[1])?,
            parse_size(parts[2])?,
            parse_size(parts[3])?,
        ]),
        n => Err(format!("give one capacity or four (P0,P1,P2,P3), not {n}")),
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal mode like 600"))
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}
