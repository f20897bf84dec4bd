//! `baton`: create, inspect and use baton queues from the shell.
//!
//! Exit status: 0 success, 1 error, 2 bad usage, 3 timed out.

use baton::{Attributes, Domain, Message, Queue, RecvError, SendError, Status};
use clap::{Parser, Subcommand};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

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
    /// Own the queue and write each payload as one line to standard output.
    Recv {
        name: String,
        /// Exit 0 after this many messages.
        #[arg(long, short = 'n')]
        count: Option<u64>,
        /// Give up (exit 3) when no message arrives for this long (seconds).
        #[arg(long, value_parser = parse_seconds)]
        timeout: Option<Duration>,
    },
    /// List the domain's queues.
    Ls,
    /// Show a queue's status.
    Stat { name: String },
    /// Remove a queue's name.
    Rm { name: String },
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
    // SAFETY: resetting a signal's disposition to its default before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
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
        } => {
            let q = Queue::open(&domain, &name)?;
            let mut rx = q.receiver()?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut received = 0u64;
            while count.is_none_or(|c| received < c) {
                let msg = match timeout {
                    Some(t) => rx.recv_timeout(t),
                    None => rx.recv(),
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
                write_message(&mut out, &msg, json).map_err(|e| Failure {
                    message: format!(
                        "cannot write message {} to standard output: {e}",
                        received + 1
                    ),
                    code: 1,
                })?;
                received += 1;
            }
        }
        Command::Ls => {
            let rows = Queue::list(&domain)?;
            if json {
                let items: Vec<_> = rows
                    .iter()
                    .map(|e| match &e.status {
                        Ok(st) => serde_json::to_value(st).unwrap_or_default(),
                        Err(err) => serde_json::json!({ "file": e.file, "error": err.to_string() }),
                    })
                    .collect();
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
                                st.owner_pid.map_or("-".to_string(), |p| p.to_string())
                            );
                        }
                        Err(err) => println!("{:<24} unusable: {err}", e.file.display()),
                    }
                }
            }
        }
        Command::Stat { name } => {
            let st = Queue::open(&domain, &name)?.status();
            if json {
                print_json(&st)?;
            } else {
                print_status(&st);
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
        "capacity {} / {} / {} / {} bytes, max message {} bytes, mode {:03o}",
        a.capacity[0], a.capacity[1], a.capacity[2], a.capacity[3], a.max_message, a.mode
    )
}

fn print_status(st: &Status) {
    println!("queue      {} (domain {})", st.name, st.domain);
    println!("attributes {}", describe_attributes(&st.attributes));
    println!(
        "owner      {}",
        st.owner_pid
            .map_or("none".to_string(), |p| format!("pid {p}"))
    );
    println!("epoch      {} ({} takeovers)", st.epoch, st.takeovers);
    println!(
        "messages   {} sent, {} received, {} rejected as full",
        st.sent, st.received, st.rejected_full
    );
    println!("priority   capacity       used   messages");
    for (p, l) in st.lanes.iter().enumerate() {
        println!(
            "{p:>8} {:>10} {:>10} {:>10}",
            l.capacity, l.used, l.messages
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
