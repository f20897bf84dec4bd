//! `baton`: create, inspect and use baton queues from the shell.
//!
//! Exit status: see [`exit`] (and `baton --help`).

use baton::{Domain, OpenError, OwnError, SendError};
use baton_cli::transports;
use clap::{Parser, Subcommand, ValueEnum};
use format::{parse_capacity, parse_duration, parse_mode, parse_retention, parse_size, Retention};
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

mod bench;
mod bridge;
mod format;
mod group;
mod inspect;
mod manual;
mod pgroup;
mod recv;
mod request;
mod send;
mod stdio;
mod supervise;
mod watch;

/// The exit statuses, the same for every command.
pub mod exit {
    /// Something failed: the message says what (an I/O error, a corrupt queue, ...).
    pub const ERROR: u8 = 1;
    /// Bad usage: an unknown option, a missing argument, an invalid name or priority.
    pub const USAGE: u8 = 2;
    /// Timed out: `recv --timeout` with no message at all, `send --timeout` with no space,
    /// `recv --standby-timeout` without ownership.
    pub const TIMEOUT: u8 = 3;
    /// The queue does not exist.
    pub const NOT_FOUND: u8 = 4;
    /// The queue is in use: owned by another process (`recv` without `--standby`), or `rm` of
    /// a queue with an owner or messages without `--force`.
    pub const IN_USE: u8 = 5;
}

/// The exit statuses, for `--help`.
const EXIT_STATUS: &str = "\
Exit status:
  0    success
  1    error (the message says what)
  2    bad usage: unknown option, missing argument, invalid name or priority
  3    timed out (recv: no message at all; send: no space; --standby-timeout)
  4    the queue does not exist
  5    the queue is in use (owned by another process; rm without --force)
  141  recv, --watch: the reader of the output pipe left (as if killed by SIGPIPE; recv
       gives back the message the reader did not read)
  129  ended by SIGHUP   } cleanly, between messages: the queue is closed, not abandoned,
  130  ended by SIGINT   } and nothing in flight is lost
  143  ended by SIGTERM  }";

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Crash-safe shared-memory message queues",
    long_about = "Crash-safe shared-memory message queues: four priority lanes per queue, any \
                  number of senders, one owner that receives, and a standby that takes the \
                  queue over with every message in place when the owner dies.",
    after_help = EXIT_STATUS,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Namespace of the queues.
    #[arg(long, global = true, env = "BATON_DOMAIN", default_value = "default")]
    domain: String,
    /// Print JSON (the same as --format json).
    #[arg(long, global = true, conflicts_with = "format")]
    json: bool,
    /// Output format: text, json, or (ls and stat) prometheus.
    #[arg(long, global = true, value_enum)]
    format: Option<Format>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// JSON: one object per answer (one per line for streams), each with a `schema` version.
    Json,
    /// The Prometheus text exposition format (ls and stat).
    Prometheus,
}

/// Help text of every queue-name argument.
const NAME_HELP: &str =
    "The queue's name: up to 200 letters, digits, '.', '_' and '-', not starting with '.'";

#[derive(Subcommand)]
pub enum Command {
    /// Create a queue, or find it if it exists (and say which).
    #[command(after_help = "\
An existing queue is found if it has the attributes given (those not given are not compared); \
otherwise the error names the difference.

Examples:
  baton create jobs
  baton create jobs --capacity 1M,256K,256K,128K --max-message 64K --retention 30s
  baton create requests --shared        # a server pool: many `recv --shared` at once

Exit status: 0 created or found, 1 exists with other attributes, 2 bad usage.")]
    Create {
        #[arg(help = NAME_HELP)]
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
        /// (`30s`, `500ms`, or seconds; 0: as soon as its owner closes or dies with no standby
        /// waiting). Default: keep it until `baton rm`.
        #[arg(long, value_parser = parse_duration)]
        retention: Option<Duration>,
        /// Competing consumers (Tuxedo's MSSQ): any number of `recv --shared` take from the
        /// queue at once, each message going to one of them; nobody owns it.
        #[arg(long)]
        shared: bool,
        /// How many requests (`baton request`) may wait for their replies at once (default
        /// 16; 0: the queue takes no requests). Each has a reply box of max-message bytes.
        #[arg(long, value_name = "N")]
        reply_boxes: Option<u32>,
        /// Capacity thresholds of a priority: `baton watch` tells when its bytes in use rise
        /// to REACHED and when they fall back to AVAILABLE (sizes; `P:0:0` removes them).
        /// Repeatable; set on the queue, new or found.
        #[arg(long, value_name = "P:REACHED:AVAILABLE", value_parser = format::parse_threshold)]
        threshold: Vec<(u8, u64, u64)>,
    },
    /// Send each MESSAGE argument, or each line of standard input, as one message.
    #[command(after_help = "\
Arguments and standard input carry the same bytes: any byte but the separator is allowed.

Examples:
  baton send jobs 'first job' 'second job'
  seq 1000 | baton send jobs --priority 1
  baton send jobs --whole < image.png
  find . -print0 | baton send files -0

If a message cannot be sent, those before it stay sent: the error says how many went and \
which argument or input record failed (with --json, also as an object on standard output).

Exit status: 0 all sent, 1 error, 2 bad usage, 3 --timeout waiting for space, 4 no such queue, \
130/143/129 stopped by a signal (between messages: none half sent).")]
    Send(send::Args),
    /// Own the queue and write each message to standard output; or run a command per message.
    #[command(after_help = recv::AFTER_HELP)]
    Recv(recv::Args),
    /// Send MESSAGE as a request and print its reply (the reply's bytes, exactly).
    #[command(after_help = "\
The request is a message like any other (it waits in the queue until received); its receiver \
answers it once (`baton serve`, or a program's `Message::reply`). If the receiver dies before \
replying, the request is delivered again and the next receiver's reply is the one printed.

Examples:
  baton request svc 'what time is it'
  baton request svc --timeout 2s --priority 0 ping
  baton request svc --json hello | jq -r .reply

Exit status: 0 reply printed, 1 error, 2 bad usage, 3 no reply within --timeout, 4 no such \
queue.")]
    Request(request::Args),
    /// Answer each request by running CMD with the payload on its standard input: its
    /// standard output is the reply.
    #[command(after_help = request::SERVE_HELP)]
    Serve(recv::ServeArgs),
    /// Follow what happens to the domain's queues (or one queue's) as it happens: queues made
    /// and removed, owners taking over and letting go, consumers joining and leaving.
    #[command(after_help = watch::AFTER_HELP)]
    Watch(watch::Args),
    /// Queue groups (create, add, remove, ls, rm) and process groups (join, send, members).
    #[command(subcommand, after_help = group::AFTER_HELP)]
    Group(group::Action),
    /// Run this node's bridge: forward what senders address to NODE/QUEUE to other nodes'
    /// bridges, and deliver what they forward here.
    #[command(after_help = bridge::AFTER_HELP)]
    Bridge(bridge::Args),
    /// Run components under a supervisor (restart, probe, fail over), or ask one how they are.
    #[command(after_help = supervise::AFTER_HELP)]
    Supervise(supervise::Args),
    /// Show the messages waiting in a queue (payloads and metadata), taking none.
    #[command(after_help = "\
Highest priority first, oldest first within a priority: the order a plain receiver takes them \
in. A snapshot: messages come and go while it looks. Messages taken and not yet acknowledged \
are not shown (`stat` counts them).

Examples:
  baton peek jobs
  baton peek jobs --count 1 --json
  baton peek requests --type 7

Exit status: 0 (messages shown or none), 1 error, 2 bad usage, 4 no such queue.")]
    Peek {
        #[arg(help = NAME_HELP)]
        name: String,
        /// Show at most this many.
        #[arg(long, short = 'n', default_value_t = 10)]
        count: usize,
        /// Only messages of this type, System V's way: 0 any, T > 0 exactly T, T < 0 every
        /// type not above |T|.
        #[arg(
            long = "type",
            value_name = "T",
            allow_hyphen_values = true,
            conflicts_with = "except"
        )]
        msg_type: Option<i64>,
        /// Only messages of any type but T.
        #[arg(long, value_name = "T", allow_hyphen_values = true)]
        except: Option<i64>,
    },
    /// Remove the messages waiting in a queue (all, or one priority's), unread.
    #[command(after_help = "\
Each message removed counts as received. In a shared queue this is safe while consumers take: \
messages they took stay theirs. A queue with an owner can only be purged while nobody owns it \
(exit 5 otherwise); then messages its last owner had not acknowledged go too.

Examples:
  baton purge jobs
  baton purge jobs --priority 3

Exit status: 0, 1 error, 2 bad usage, 4 no such queue, 5 owned by a live process.")]
    Purge {
        #[arg(help = NAME_HELP)]
        name: String,
        /// Only this priority (0 highest to 3).
        #[arg(long, short, value_parser = clap::value_parser!(u8).range(0..=3))]
        priority: Option<u8>,
    },
    /// Change a queue's retention: how long it is kept once it has no owner.
    #[command(after_help = "\
The new retention is in force at once, for every process, and counts from when the queue's \
last owner went (even if that was before). `create` then compares against it.

Examples:
  baton retention jobs 30s      # deleted once it has had no owner for 30 s
  baton retention jobs 0        # deleted when its owner closes or dies with no standby
  baton retention jobs none     # kept until `baton rm`

Exit status: 0, 1 error (e.g. a shared queue has no retention), 2 bad usage, 4 no such queue.")]
    Retention {
        #[arg(help = NAME_HELP)]
        name: String,
        /// A duration (`30s`, `500ms`, or seconds), or `none` to keep the queue until removed.
        #[arg(value_name = "DURATION|none", value_parser = parse_retention)]
        retention: Retention,
    },
    /// List the queues of the domain (or of every domain), changing nothing.
    #[command(after_help = "\
A queue whose retention has run out is listed as expired; `baton gc` removes it.

Examples:
  baton ls
  baton ls --all-domains --json
  baton ls --watch 1
  baton ls --format prometheus > /var/lib/node_exporter/baton.prom")]
    Ls {
        /// Every domain's queues, like `ipcs -q`.
        #[arg(long)]
        all_domains: bool,
        /// Refresh every SECS (default 2) until stopped; with --json, one object per line.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2",
              value_parser = parse_duration)]
        watch: Option<Duration>,
    },
    /// Show a queue's status and who is attached to it, changing nothing.
    #[command(after_help = "\
Examples:
  baton stat jobs
  baton stat jobs --watch 0.5
  baton stat jobs --format prometheus

Exit status: 0, 1 error, 2 bad usage, 4 no such queue.")]
    Stat {
        #[arg(help = NAME_HELP)]
        name: String,
        /// Report the owner as stalled when the message it would take next has waited this
        /// long.
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        stall_after: Duration,
        /// Refresh every SECS (default 2) until stopped; with --json, one object per line.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2",
              value_parser = parse_duration)]
        watch: Option<Duration>,
    },
    /// Remove a queue, with its messages; processes that have it open get "removed" errors.
    #[command(after_help = "\
A queue with an owner, standbys or messages is removed only with --force; the output says what \
went with it.

Examples:
  baton rm jobs
  baton rm jobs --force

Exit status: 0 removed, 1 error (e.g. permission denied), 2 bad usage, 4 no such queue, 5 in \
use (without --force).")]
    Rm {
        #[arg(help = NAME_HELP)]
        name: String,
        /// Remove it even if it has an owner, standbys or messages.
        #[arg(long, short)]
        force: bool,
    },
    /// Remove the domain's queues whose retention has run out, and temporary files of dead
    /// processes.
    #[command(after_help = "\
Examples:
  baton gc
  baton --json gc
  for d in $(baton ls --all-domains --json | jq -r '.queues[].status.domain' | sort -u); do
    baton --domain \"$d\" gc; done")]
    Gc,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "\
Examples:
  baton completions bash > ~/.local/share/bash-completion/completions/baton
  baton completions zsh > \"${fpath[1]}/_baton\"
  baton completions fish > ~/.config/fish/completions/baton.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page of baton or of one command (roff), or write them all to a folder.
    #[command(after_help = "\
Examples:
  baton man | man -l -
  baton man recv | man -l -
  baton man --dir /usr/local/share/man/man1")]
    Man {
        /// The command whose page to print (default: baton itself).
        command: Option<String>,
        /// Write every page (baton.1, baton-create.1, ...) into this folder instead.
        #[arg(long, conflicts_with = "command")]
        dir: Option<std::path::PathBuf>,
    },
    /// Compare baton with pipes, Unix sockets, POSIX and System V message queues and bare
    /// shared memory (and iceoryx2, if built with the `iceoryx2` feature), across two
    /// processes on two CPUs: round-trip latency and one-way throughput.
    Bench {
        /// Run each case for about this long per round; the whole run stays under 60 s.
        #[arg(long, value_parser = parse_duration, default_value = "0.1")]
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
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["sizes", "svg", "case_seconds"])]
        fan_in: Vec<u32>,
        /// Messages in each fan-in case, split among its senders.
        #[arg(long, default_value_t = 400_000)]
        fan_in_messages: u64,
        /// Instead, measure competing consumers: one sender, this many consumer processes
        /// each (comma-separated, e.g. 1,2,4,8) taking from one queue, baton's shared queue
        /// against N readers of one POSIX and one System V message queue.
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["sizes", "svg", "case_seconds", "fan_in"])]
        consumers: Vec<u32>,
        /// With --consumers: each consumer sleeps this long per message, its "work" (e.g. 20us).
        #[arg(long, value_parser = parse_duration, default_value = "0", requires = "consumers")]
        work: Duration,
        /// Messages in each --consumers case.
        #[arg(long, default_value_t = 20_000, requires = "consumers")]
        consumer_messages: u64,
    },
    /// The peer processes of `baton bench` (internal, hidden).
    #[command(flatten)]
    Peer(transports::Peer),
}

/// Why a command failed, and its exit status.
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code,
        }
    }
}

impl<E: std::error::Error + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            message: e.to_string(),
            code: status_of(&e),
        }
    }
}

/// The exit status of a library error: usage for bad names and priorities, its own status
/// for a missing queue, an owned queue and a timeout.
fn status_of(e: &(dyn std::error::Error + 'static)) -> u8 {
    if let Some(e) = e.downcast_ref::<OpenError>() {
        return match e {
            OpenError::InvalidName { .. } | OpenError::InvalidAttributes(_) => exit::USAGE,
            OpenError::NotFound { .. } => exit::NOT_FOUND,
            _ => exit::ERROR,
        };
    }
    if let Some(e) = e.downcast_ref::<OwnError>() {
        return match e {
            OwnError::Busy { .. } => exit::IN_USE,
            OwnError::Timeout { .. } => exit::TIMEOUT,
            _ => exit::ERROR,
        };
    }
    if let Some(e) = e.downcast_ref::<baton::RequestError>() {
        return match e {
            baton::RequestError::Timeout => exit::TIMEOUT,
            baton::RequestError::TooBig { .. } => exit::USAGE,
            _ => exit::ERROR,
        };
    }
    if let Some(e) = e.downcast_ref::<baton::GroupError>() {
        use baton::GroupError as G;
        return match e {
            G::NotFound { .. } => exit::NOT_FOUND,
            G::Exists { .. } | G::AlreadyMember { .. } | G::NotMember { .. } => exit::IN_USE,
            G::Open(o) => status_of(o),
            G::Send { error, .. } => status_of(error),
            G::Request { error, .. } => status_of(error),
            // A broadcast that timed out on every member.
            G::Undelivered { failed, .. }
                if failed.iter().all(|(_, e)| status_of(e) == exit::TIMEOUT) =>
            {
                exit::TIMEOUT
            }
            _ => exit::ERROR,
        };
    }
    if let Some(e) = e.downcast_ref::<SendError>() {
        return match e {
            SendError::InvalidPriority(_) => exit::USAGE,
            SendError::Timeout => exit::TIMEOUT,
            _ => exit::ERROR,
        };
    }
    exit::ERROR
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away (`| head`).
    // (`recv` and `send` handle the broken pipe themselves: see `stdio::catch_stop_signals`.)
    // SAFETY: resetting a signal's disposition to its default before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if stdio::stdout_closed_at_start() {
        eprintln!(
            "baton: error: standard output is closed; refusing to run (give it a file or /dev/null)"
        );
        return ExitCode::from(exit::ERROR);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // An empty message: an end that speaks for itself (the reader of the output left).
            if !f.message.is_empty() {
                eprintln!("baton: error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let format = match (cli.json, cli.format) {
        (true, _) => Format::Json,
        (false, f) => f.unwrap_or(Format::Text),
    };
    let domain = Domain::new(&cli.domain)?;
    let json = format == Format::Json;
    if format == Format::Prometheus
        && !matches!(cli.command, Command::Ls { .. } | Command::Stat { .. })
    {
        return Err(Failure::new(
            exit::USAGE,
            "--format prometheus is for `ls` and `stat` only",
        ));
    }
    match cli.command {
        Command::Create {
            name,
            capacity,
            max_message,
            mode,
            retention,
            shared,
            reply_boxes,
            threshold,
        } => inspect::create(
            &domain,
            &name,
            inspect::Asked {
                capacity,
                max_message,
                mode,
                retention,
                shared,
                reply_boxes,
                thresholds: threshold,
            },
            json,
        ),
        Command::Send(args) => send::run(&domain, args, json),
        Command::Recv(args) => recv::run(&domain, args, json),
        Command::Request(args) => request::run(&domain, args, json),
        Command::Serve(args) => recv::serve(&domain, args),
        Command::Watch(args) => watch::run(&domain, args, json),
        Command::Group(action) => group::run(&domain, action, json),
        Command::Bridge(args) => bridge::run(args, json),
        Command::Supervise(args) => supervise::run(args, json),
        Command::Peek {
            name,
            count,
            msg_type,
            except,
        } => inspect::peek(&domain, &name, count, msg_type, except, json),
        Command::Purge { name, priority } => inspect::purge(&domain, &name, priority, json),
        Command::Retention { name, retention } => {
            inspect::set_retention(&domain, &name, retention.0, json)
        }
        Command::Ls { all_domains, watch } => inspect::watching(watch, format, |one_line| {
            inspect::ls(&domain, all_domains, format, one_line)
        }),
        Command::Stat {
            name,
            stall_after,
            watch,
        } => inspect::watching(watch, format, |one_line| {
            inspect::stat(&domain, &name, stall_after, format, one_line)
        }),
        Command::Rm { name, force } => inspect::rm(&domain, &name, force, json),
        Command::Gc => inspect::gc(&domain, json),
        Command::Completions { shell } => {
            let mut cmd = manual::visible_command();
            clap_complete::generate(shell, &mut cmd, "baton", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { command, dir } => manual::run(command.as_deref(), dir.as_deref()),
        Command::Bench {
            rounds,
            transports,
            consumers,
            work,
            consumer_messages,
            ..
        } if !consumers.is_empty() => Ok(bench::consumers(
            &consumers,
            consumer_messages,
            work,
            rounds,
            &transports,
            json,
        )?),
        Command::Bench {
            rounds,
            transports,
            fan_in,
            fan_in_messages,
            ..
        } if !fan_in.is_empty() => Ok(bench::fan_in(
            &fan_in,
            fan_in_messages,
            rounds,
            &transports,
            json,
        )?),
        Command::Bench {
            case_seconds,
            rounds,
            transports,
            sizes,
            svg,
            ..
        } => Ok(bench::run(
            case_seconds,
            rounds,
            &transports,
            &sizes,
            json,
            svg.as_deref(),
        )?),
        Command::Peer(peer) => peer.run().map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => Failure::new(exit::USAGE, e.to_string()),
            _ => Failure::from(e),
        }),
    }
}

/// Command-line words as the bytes the user gave (any byte but NUL can be in an argument).
pub fn os_bytes(s: &OsString) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes()
}
