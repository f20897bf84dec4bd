//! `baton recv`: own a queue and hand its messages to standard output or to a command.

use crate::format::{
    human_duration, parse_duration, render_message, unix_ns_of_monotonic, MessageFormat,
};
use crate::stdio::{self, RECV_SLICE, STOP_CHECK};
use crate::{exit, Failure};
use baton::{
    Consumer, Domain, Message, OwnError, Queue, Receiver, ReceiverOptions, RecvError, TypeFilter,
};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const AFTER_HELP: &str = "\
What each way of taking messages guarantees:
  to a file        each message is acknowledged once written and flushed; if it cannot be
                   written (disk full, I/O error) it is given back, delivered again later.
  to a pipe        each message is written, then acknowledged once the reader has read it out
                   of the pipe (recv waits for that before the next): a reader that stops
                   early (`| head -n 3`) loses nothing; the message it left is given back and
                   recv ends quietly with status 141, as if killed by SIGPIPE (also when idle).
                   What the reader did with what it read, recv cannot know: use --exec.
                   --no-pipe-wait acknowledges on write, for speed: then what sits in the pipe
                   when the reader stops is lost. A Unix stream socket is treated the same way.
  to a TCP socket  acknowledged once the peer's kernel acknowledged it; what the peer program
                   read, no kernel says: its unread receive buffer is lost if it closes.
  to a terminal    acknowledged once written (a pseudo-terminal cannot say what was read).
  --count N        takes exactly N messages: nothing after the N-th is taken or acknowledged
                   (with --exec, a message counts once acknowledged or dead-lettered).
  --exec CMD ARGS  runs CMD once per message, payload on its standard input, metadata in
                   BATON_* environment variables; the message is acknowledged only when CMD
                   exits 0, else given back and tried again (--max-attempts, --dead-letter).
  a signal         SIGINT, SIGTERM and SIGHUP end recv cleanly (exit 130, 143, 129), also in
                   the middle of a write blocked on a reader: the message is given back, the
                   queue is closed, not abandoned, and no takeover is counted. During --exec
                   the signal is passed on to CMD; its exit status decides, and a failure then
                   uses up no attempt.

The environment of an --exec command: BATON_QUEUE, BATON_DOMAIN, BATON_MESSAGE_ID,
BATON_PRIORITY, BATON_TYPE, BATON_VERSION, BATON_SENDER_PID, BATON_SENT_UNIX_NS (wall clock),
BATON_SENT_MONOTONIC_NS (CLOCK_MONOTONIC), BATON_LENGTH, BATON_REDELIVERED (0 or 1) and
BATON_ATTEMPT (1 for the first run of this recv on the message).

Examples:
  baton recv jobs                                  # one message per line, until stopped
  baton recv jobs --count 10 --timeout 5s
  baton recv jobs --drain --json                   # what waits now, with metadata
  baton recv jobs --standby --exec ./handle-job    # take over if the owner dies
  baton recv jobs --max-attempts 5 --dead-letter jobs.dead --exec sh -c 'process < /dev/stdin'

Everything after --exec belongs to the command: give recv's own options before it.

Exit status: 0 done (--count reached, --drain emptied the queue, or --timeout after some
messages), 1 error, 2 bad usage, 3 --timeout with no message at all or --standby-timeout,
4 no such queue, 5 owned by another process (without --standby), 141 the pipe's reader left
(the message it did not read stays), 130/143/129 stopped by a signal.";

#[derive(clap::Args)]
pub struct Args {
    #[arg(help = crate::NAME_HELP)]
    name: String,
    /// Take this many messages, then exit 0; nothing after them is taken.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Take what waits now, then exit 0 when the queue is empty (0 messages included).
    #[arg(long, conflicts_with = "timeout")]
    drain: bool,
    /// Stop when no message arrives for this long (`5s`, `250ms`, or seconds): exit 3 if none
    /// arrived at all, else 0.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// If the queue is owned, wait to own it (until its owner closes or dies).
    #[arg(long, conflicts_with = "shared")]
    standby: bool,
    /// Take from a shared queue as one of its competing consumers (any number run at once;
    /// each message goes to one of them). A message this recv took and did not finish comes
    /// again, flagged, to another consumer if this one dies.
    #[arg(long)]
    shared: bool,
    /// With --shared: take only messages of this type, System V's way: 0 any, T > 0 exactly
    /// T, T < 0 the lowest type not above |T| (`--type=-5`). Others stay, in order.
    #[arg(
        long = "type",
        value_name = "T",
        requires = "shared",
        allow_hyphen_values = true,
        conflicts_with = "except"
    )]
    msg_type: Option<i64>,
    /// With --shared: take only messages of any type but T.
    #[arg(
        long,
        value_name = "T",
        requires = "shared",
        allow_hyphen_values = true
    )]
    except: Option<i64>,
    /// With --standby: give up (exit 3) if the queue is not ours within this long.
    #[arg(long, value_parser = parse_duration, requires = "standby")]
    standby_timeout: Option<Duration>,
    /// Discard the messages waiting when ownership is taken.
    #[arg(long, conflicts_with = "shared")]
    empty: bool,
    /// End each payload with a NUL byte instead of a newline.
    #[arg(long, short = '0', conflicts_with = "exec")]
    null: bool,
    /// Into a pipe, acknowledge each message once written, without waiting for the reader to
    /// read it: faster, but a reader that stops early loses what sat in the pipe.
    #[arg(long, conflicts_with = "exec")]
    no_pipe_wait: bool,
    /// Start each output record with `redelivered<TAB>` or `new<TAB>`.
    #[arg(long, conflicts_with = "exec")]
    mark_redelivered: bool,
    /// Run CMD [ARGS...] per message (everything after --exec belongs to it) and acknowledge
    /// the message only if it exits 0.
    #[arg(long, value_name = "CMD", num_args = 1.., allow_hyphen_values = true)]
    exec: Option<Vec<OsString>>,
    /// With --exec: how many times this recv runs CMD on one message before giving up on it
    /// (then it goes to --dead-letter, or recv stops with the message left in the queue).
    #[arg(long, default_value_t = 3, requires = "exec",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// With --exec: the queue (same domain) that receives a message CMD failed on
    /// --max-attempts times, with the same priority, type and version.
    #[arg(long, value_name = "QUEUE", requires = "exec")]
    dead_letter: Option<String>,
}

/// `baton serve`: `recv --exec` whose command's output answers each request.
#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(help = crate::NAME_HELP)]
    name: String,
    /// Answer this many requests (and messages), then exit 0.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Stop when no request arrives for this long: exit 3 if none arrived at all, else 0.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// If the queue is owned, wait to own it (until its owner closes or dies).
    #[arg(long, conflicts_with = "shared")]
    standby: bool,
    /// Take from a shared queue as one of its competing consumers.
    #[arg(long)]
    shared: bool,
    /// How many times this serve runs CMD on one request before giving up on it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// The queue (same domain) that receives a request CMD failed on --max-attempts times.
    #[arg(long, value_name = "QUEUE")]
    dead_letter: Option<String>,
    /// The command and its arguments (after `--`).
    #[arg(value_name = "CMD", required = true, num_args = 1.., last = true)]
    command: Vec<OsString>,
}

/// Runs `baton serve`: `recv` with `--exec`, replying with the command's output.
pub fn serve(domain: &Domain, s: ServeArgs) -> Result<(), Failure> {
    let args = Args {
        name: s.name,
        count: s.count,
        drain: false,
        timeout: s.timeout,
        standby: s.standby,
        shared: s.shared,
        msg_type: None,
        except: None,
        standby_timeout: None,
        empty: false,
        null: false,
        no_pipe_wait: false,
        mark_redelivered: false,
        exec: Some(s.command),
        max_attempts: s.max_attempts,
        dead_letter: s.dead_letter,
    };
    run_with(domain, args, false, true)
}

/// Why the receive loop ended, when it ended well.
enum End {
    /// `--count` reached, or `--drain` found the queue empty.
    Done,
    /// `--timeout` with no message for that long.
    Idle,
}

pub fn run(domain: &Domain, args: Args, json: bool) -> Result<(), Failure> {
    run_with(domain, args, json, false)
}

/// `recv`, or (`reply`) `serve`: with `--exec`, a request's reply is the command's output.
fn run_with(domain: &Domain, args: Args, json: bool, reply: bool) -> Result<(), Failure> {
    if json && (args.null || args.mark_redelivered || args.exec.is_some()) {
        return Err(Failure::new(
            exit::USAGE,
            "--json writes messages as JSON lines: it does not go with -0, --mark-redelivered or --exec",
        ));
    }
    if args.dead_letter.as_deref() == Some(args.name.as_str()) {
        return Err(Failure::new(
            exit::USAGE,
            "the dead-letter queue must be another queue (a failing message would go round forever)",
        ));
    }
    let q = Queue::open(domain, &args.name)?;
    let dead_letter = match &args.dead_letter {
        Some(name) => Some(Queue::open(domain, name).map_err(|e| {
            let f = Failure::from(e);
            Failure::new(f.code, format!("dead-letter queue: {}", f.message))
        })?),
        None => None,
    };
    // Signals end `recv` cleanly from here on, standby wait included: it waits in short
    // slices so that it sees them.
    stdio::catch_stop_signals();
    let mut rx = if args.shared {
        let filter = match (args.msg_type, args.except) {
            (Some(t), _) => TypeFilter::sysv(t),
            (None, Some(t)) => TypeFilter::Except(t),
            (None, None) => TypeFilter::Any,
        };
        let consumer = q.consumer().map_err(|e| match e {
            OwnError::NotShared { name } => Failure::new(
                exit::USAGE,
                format!(
                    "queue {name} is not shared: one owner at a time receives (recv without \
                     --shared; `baton create --shared` makes a queue for competing consumers)"
                ),
            ),
            e => e.into(),
        })?;
        Source::Consumer(consumer.with_filter(filter))
    } else {
        let rx = own(&q, &args)?;
        if rx.discarded() > 0 {
            eprintln!(
                "baton: discarded {} waiting in queue {} (--empty)",
                crate::inspect::plural(rx.discarded(), "message"),
                args.name
            );
        }
        if rx.took_over() {
            eprintln!(
                "baton: took queue {} over from a dead owner (epoch {})",
                args.name,
                rx.epoch()
            );
        }
        Source::Owner(rx)
    };
    stdio::cancel_on_stop(rx.canceller());
    let format = if json {
        MessageFormat::Json
    } else if args.null {
        MessageFormat::Nul
    } else {
        MessageFormat::Lines
    };
    let sink = stdio::stdout_sink();
    let mut handler: Box<dyn FnMut(Message) -> Result<Taken, Failure>> = match &args.exec {
        Some(command) => {
            let mut exec = Exec {
                command,
                reply,
                max_reply: q.attributes().max_message as usize,
                queue: &args.name,
                domain: domain.to_string(),
                max_attempts: args.max_attempts,
                dead_letter: dead_letter.as_ref(),
                attempts: HashMap::new(),
                watch_reader: sink.waits_for_reader(),
            };
            Box::new(move |msg| exec.handle(msg))
        }
        None => {
            let name = args.name.clone();
            let mark = args.mark_redelivered;
            let wait_for_reader = !args.no_pipe_wait && sink.waits_for_reader();
            Box::new(move |msg| {
                let record = render_message(&name, &msg, format, mark);
                let mut grace = stdio::Grace::default();
                let written = stdio::write_stdout(&record, &mut grace).and_then(|()| {
                    if wait_for_reader {
                        stdio::wait_until_read(sink, &mut grace)
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = written {
                    // Not written, or not read: the message stays in the queue, delivered
                    // again (flagged) to the next owner.
                    let _ = msg.release();
                    return Err(output_failure(e));
                }
                // Only now, with the message written (and, into a pipe or a Unix socket, read
                // by the reader), does it leave the queue.
                msg.ack()?;
                Ok(Taken::Acknowledged)
            })
        }
    };
    let mut received = 0u64;
    // Into a pipe or socket, an idle recv looks now and then whether its reader is still
    // there, and ends (141) rather than hold the queue for nobody.
    let watch_reader = sink.waits_for_reader();
    let end = receive(&mut rx, &args, watch_reader, &mut received, &mut handler);
    // Closing the receiver is a clean hand-over: nothing is in flight, the next owner takes no
    // dead owner's queue, a retention-0 queue goes.
    drop(handler);
    drop(rx);
    if q.attributes().retention == Some(Duration::ZERO) {
        let st = q.status();
        let left: u64 = st.lanes.iter().map(|l| l.messages).sum();
        if st.removed && left > 0 {
            // What was "given back" went with the queue: say so rather than let the message
            // above ("it stays in the queue") stand.
            eprintln!(
                "baton: queue {} has retention 0: it was removed as recv closed it, with {}",
                args.name,
                crate::inspect::plural(left, "message")
            );
        }
    }
    match end {
        Ok(End::Done) => Ok(()),
        Ok(End::Idle) if received > 0 => {
            eprintln!(
                "baton: no message for {}; {received} received{}",
                human_duration(args.timeout.unwrap_or_default()),
                args.count.map_or(String::new(), |c| format!(" of {c}"))
            );
            Ok(())
        }
        Ok(End::Idle) => Err(Failure::new(
            exit::TIMEOUT,
            format!(
                "timed out after {} with no message on queue {}",
                human_duration(args.timeout.unwrap_or_default()),
                args.name
            ),
        )),
        Err(f) if f.code > 128 && !f.message.is_empty() => Err(Failure::new(
            f.code,
            format!(
                "{} after {}",
                f.message,
                crate::inspect::plural(received, "message")
            ),
        )),
        Err(f) => Err(f),
    }
}

/// Takes ownership, waiting as a standby if asked, in slices so that a stop signal is seen.
fn own(q: &Queue, args: &Args) -> Result<Receiver, Failure> {
    let standby_deadline = args.standby_timeout.map(|t| Instant::now() + t);
    // Counted as a standby across the slices too, so that a retention-0 queue whose owner
    // closes between two slices is kept for us.
    let _mark = if args.standby {
        Some(q.standby_mark()?)
    } else {
        None
    };
    loop {
        stopped()?;
        let slice = args.standby.then(|| {
            standby_deadline.map_or(STANDBY_SLICE, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(STANDBY_SLICE)
            })
        });
        match q.receiver_with(ReceiverOptions {
            standby: args.standby,
            timeout: slice,
            empty: args.empty,
        }) {
            Ok(rx) => return Ok(rx),
            Err(OwnError::Timeout { .. })
                if standby_deadline.is_none_or(|d| Instant::now() < d) => {}
            Err(OwnError::Shared { name }) => {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "queue {name} is shared by competing consumers: nobody owns it; take \
                         from it with `recv --shared`"
                    ),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Where recv takes messages from: the queue's owner, or one of its competing consumers.
enum Source {
    Owner(Receiver),
    Consumer(Consumer),
}

impl Source {
    fn try_recv(&mut self) -> Result<Message, RecvError> {
        match self {
            Source::Owner(rx) => rx.try_recv(),
            Source::Consumer(c) => c.try_recv(),
        }
    }

    fn recv_timeout(&mut self, t: Duration) -> Result<Message, RecvError> {
        match self {
            Source::Owner(rx) => rx.recv_timeout(t),
            Source::Consumer(c) => c.recv_timeout(t),
        }
    }

    fn canceller(&self) -> baton::Canceller {
        match self {
            Source::Owner(rx) => rx.canceller(),
            Source::Consumer(c) => c.canceller(),
        }
    }
}

/// How long `recv --standby` waits for the owner lock at a time.
const STANDBY_SLICE: Duration = Duration::from_millis(200);

/// An error if a stop signal came.
fn stopped() -> Result<(), Failure> {
    match stdio::stop_signal() {
        Some(sig) => Err(Failure::new(
            stdio::signal_status(sig),
            format!("stopped by signal {sig}"),
        )),
        None => Ok(()),
    }
}

/// Takes messages one at a time and hands each to `handler` until the count, the queue's end
/// (`--drain`), the idle timeout, an error or a stop signal.
fn receive(
    rx: &mut Source,
    args: &Args,
    watch_reader: bool,
    received: &mut u64,
    handler: &mut dyn FnMut(Message) -> Result<Taken, Failure>,
) -> Result<End, Failure> {
    let mut idle_since = Instant::now();
    while args.count.is_none_or(|c| *received < c) {
        stopped()?;
        let msg = if args.drain {
            match rx.try_recv() {
                Err(RecvError::Empty) => return Ok(End::Done),
                other => other?,
            }
        } else {
            let slice = match args.timeout {
                Some(t) => (idle_since + t)
                    .saturating_duration_since(Instant::now())
                    .min(RECV_SLICE),
                None => RECV_SLICE,
            };
            match rx.recv_timeout(slice) {
                Err(RecvError::Timeout | RecvError::Interrupted) => {
                    if args.timeout.is_some_and(|t| idle_since.elapsed() >= t) {
                        return Ok(End::Idle);
                    }
                    if watch_reader && stdio::reader_gone() {
                        return Err(reader_left());
                    }
                    continue;
                }
                other => other?,
            }
        };
        if handler(msg)? == Taken::Acknowledged {
            *received += 1;
        }
        idle_since = Instant::now();
    }
    // A stop that came during the last message still says so.
    stopped()?;
    Ok(End::Done)
}

/// What became of a message handed to the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// Delivered and acknowledged (or moved to the dead-letter queue): it counts.
    Acknowledged,
    /// Given back to be tried again.
    Released,
}

/// The end of a recv whose reader left: quiet, with the status of a tool killed by SIGPIPE.
fn reader_left() -> Failure {
    Failure::new(stdio::signal_status(libc::SIGPIPE), "")
}

/// Why writing a message (or waiting for its reader) failed, as recv's failure.
fn output_failure(e: std::io::Error) -> Failure {
    match e.kind() {
        // The reader is gone (`| head -n 3`).
        std::io::ErrorKind::BrokenPipe => reader_left(),
        std::io::ErrorKind::Interrupted => stopped().err().unwrap_or_else(|| Failure::from(e)),
        _ => Failure::new(
            exit::ERROR,
            format!("cannot write a message to standard output: {e}; it stays in the queue"),
        ),
    }
}

/// `--exec`: runs a command per message.
struct Exec<'a> {
    command: &'a [OsString],
    /// `serve`: a request's reply is the command's standard output.
    reply: bool,
    /// The longest reply (the queue's maximum message size).
    max_reply: usize,
    queue: &'a str,
    domain: String,
    max_attempts: u32,
    dead_letter: Option<&'a Queue>,
    /// Runs of the command per message id, for the messages it failed on.
    attempts: HashMap<u64, u32>,
    /// Standard output (which the command inherits) is a pipe or socket whose reader may go.
    watch_reader: bool,
}

impl Exec<'_> {
    fn handle(&mut self, msg: Message) -> Result<Taken, Failure> {
        let attempt = self.attempts.get(&msg.id()).copied().unwrap_or(0) + 1;
        let capture = self.reply && msg.meta().is_request();
        let output = if capture {
            match reply_file() {
                Ok(f) => Some(f),
                Err(f) => {
                    let _ = msg.release();
                    return Err(f);
                }
            }
        } else {
            None
        };
        let status = match self.run_command(&msg, attempt, output.as_ref()) {
            Ok(status) => status,
            Err(f) => {
                let _ = msg.release();
                return Err(f);
            }
        };
        let status = match (status.success(), output) {
            (true, Some(file)) => match read_reply(file, self.max_reply) {
                Ok(reply) => {
                    if let Err(f) = self.answer(&msg, &reply) {
                        // Not written (no sender slot, the queue removed or damaged): the
                        // request stays in the queue, to be answered again (review).
                        let _ = msg.release();
                        return Err(f);
                    }
                    status
                }
                Err(too_long) => {
                    eprintln!(
                        "baton: the output of {} on request {} is {too_long}: a reply holds at most {} bytes",
                        self.command[0].to_string_lossy(),
                        msg.id(),
                        self.max_reply
                    );
                    std::process::ExitStatus::from_raw(1 << 8)
                }
            },
            _ => status,
        };
        if status.success() {
            self.attempts.remove(&msg.id());
            msg.ack()?;
            return Ok(Taken::Acknowledged);
        }
        if stopped().is_err() {
            // The command failed while we were being stopped (most likely of the signal we
            // passed on): not the message's fault, so no attempt is used up.
            msg.release()?;
            return stopped().map(|()| Taken::Released);
        }
        if self.watch_reader && stdio::reader_gone() {
            // The reader of the output the command writes to went away (it likely died of
            // SIGPIPE): not the message's fault either.
            msg.release()?;
            return Err(reader_left());
        }
        let how = describe_status(status);
        let command = self.command[0].to_string_lossy();
        if attempt < self.max_attempts {
            eprintln!(
                "baton: {command} {how} on message {} (attempt {attempt} of {}); it will be tried again",
                msg.id(), self.max_attempts
            );
            self.attempts.insert(msg.id(), attempt);
            msg.release()?;
            return Ok(Taken::Released);
        }
        self.attempts.remove(&msg.id());
        let id = msg.id();
        let Some(dlq) = self.dead_letter else {
            msg.release()?;
            return Err(Failure::new(
                exit::ERROR,
                format!(
                    "{command} {how} on message {id} {} times; it stays in the queue (give --dead-letter to move such messages aside)",
                    self.max_attempts
                ),
            ));
        };
        if let Err(f) = move_to(dlq, &msg) {
            let _ = msg.release();
            return Err(Failure::new(
                f.code,
                format!(
                    "cannot move message {id} to the dead-letter queue: {}; it stays in the queue",
                    f.message
                ),
            ));
        }
        eprintln!(
            "baton: {command} {how} on message {id} {} times; moved it to queue {}",
            self.max_attempts,
            dlq.name()
        );
        msg.ack()?;
        Ok(Taken::Acknowledged)
    }

    /// Replies to a request with `reply`. A reply refused because it is not needed any more
    /// (the request was answered before, or its requester went) is said, not an error: the
    /// request was handled. Any other failure is the caller's to give the request back for.
    fn answer(&self, msg: &Message, reply: &[u8]) -> Result<(), Failure> {
        match msg.reply(reply) {
            Ok(()) => Ok(()),
            Err(e @ (baton::ReplyError::AlreadyReplied | baton::ReplyError::RequesterGone)) => {
                eprintln!("baton: request {}: {e}", msg.id());
                Ok(())
            }
            Err(e) => Err(Failure::new(
                exit::ERROR,
                format!(
                    "cannot reply to request {}: {e}; the request stays in the queue",
                    msg.id()
                ),
            )),
        }
    }

    /// Runs the command on one message and waits for it. A stop signal is passed on to the
    /// command, which decides: the message is acknowledged if it still exits 0. With
    /// `output`, the command's standard output goes there (a request's reply).
    fn run_command(
        &self,
        msg: &Message,
        attempt: u32,
        output: Option<&std::fs::File>,
    ) -> Result<std::process::ExitStatus, Failure> {
        let stdout = match output {
            Some(f) => Stdio::from(f.try_clone().map_err(|e| {
                Failure::new(
                    exit::ERROR,
                    format!("cannot give the command its output: {e}"),
                )
            })?),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(stdout)
            .env("BATON_QUEUE", self.queue)
            .env("BATON_DOMAIN", &self.domain)
            .env("BATON_MESSAGE_ID", msg.id().to_string())
            .env("BATON_PRIORITY", msg.priority().to_string())
            .env("BATON_TYPE", msg.msg_type().to_string())
            .env("BATON_VERSION", msg.version().to_string())
            .env("BATON_SENDER_PID", msg.sender_pid().to_string())
            .env(
                "BATON_SENT_UNIX_NS",
                unix_ns_of_monotonic(msg.sent_ns()).to_string(),
            )
            .env("BATON_SENT_MONOTONIC_NS", msg.sent_ns().to_string())
            .env("BATON_LENGTH", msg.len().to_string())
            .env("BATON_REDELIVERED", u8::from(msg.redelivered()).to_string())
            .env("BATON_ATTEMPT", attempt.to_string())
            .spawn()
            .map_err(|e| {
                Failure::new(
                    exit::ERROR,
                    format!(
                        "cannot run {}: {e}; the message stays in the queue",
                        self.command[0].to_string_lossy()
                    ),
                )
            })?;
        let stdin = child.stdin.take();
        feed_and_wait(child.id() as libc::pid_t, stdin, msg.payload())
    }
}

/// An anonymous file in memory for a command's output (its reply).
fn reply_file() -> Result<std::fs::File, Failure> {
    use std::os::fd::FromRawFd;
    // SAFETY: a valid NUL-terminated name; the flags are memfd_create's.
    let fd = unsafe { libc::memfd_create(c"baton-reply".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Failure::new(
            exit::ERROR,
            format!(
                "cannot make a file for the reply: {}; the request stays in the queue",
                std::io::Error::last_os_error()
            ),
        ));
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// The command's output, if it fits in `max` bytes; else how much it wrote.
fn read_reply(mut file: std::fs::File, max: usize) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek};
    let mut reply = Vec::new();
    let read = file
        .seek(std::io::SeekFrom::Start(0))
        .and_then(|_| file.by_ref().take(max as u64 + 1).read_to_end(&mut reply));
    match read {
        Ok(n) if n <= max => Ok(reply),
        Ok(_) => Err(format!("more than {max} bytes")),
        Err(e) => Err(format!("output that cannot be read back ({e})")),
    }
}

/// Sends `msg` (payload, priority, type and version) to the dead-letter queue, waiting for
/// space in slices so that a stop signal ends the wait.
fn move_to(dlq: &Queue, msg: &Message) -> Result<(), Failure> {
    let tx = dlq
        .sender()
        .with_priority(msg.priority())?
        .with_type(msg.msg_type())
        .with_version(msg.version());
    loop {
        stopped()?;
        match tx.send_timeout(msg.payload(), STOP_CHECK) {
            Err(baton::SendError::Timeout) => continue,
            other => return Ok(other?),
        }
    }
}

/// Writes `payload` to the command's standard input, then closes it, and waits for the
/// command to end. The pipe is non-blocking and the command is watched while it is fed: once
/// the command has ended, what it did not read does not matter (even if a child it left
/// behind keeps the pipe open), and a stop signal is passed on to it.
fn feed_and_wait(
    pid: libc::pid_t,
    stdin: Option<std::process::ChildStdin>,
    payload: &[u8],
) -> Result<std::process::ExitStatus, Failure> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::ExitStatusExt;
    if let Some(stdin) = stdin {
        let fd = stdin.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
            )
        };
        let mut done = 0;
        let mut passed_on = false;
        while done < payload.len() {
            let rest = &payload[done..];
            // SAFETY: writing from a valid slice.
            let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if n > 0 {
                done += n as usize;
                continue;
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {}
                // EPIPE: the command does not read (all of) its input; its status decides.
                _ => break,
            }
            let mut status = 0;
            // SAFETY: looking whether our own child has ended, without waiting.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                return Ok(std::process::ExitStatus::from_raw(status));
            }
            if let (Some(sig), false) = (stdio::stop_signal(), passed_on) {
                // SAFETY: signalling our own child, which has not been reaped yet.
                unsafe { libc::kill(pid, sig) };
                passed_on = true;
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 10) };
        }
        drop(stdin);
    }
    wait_passing_on_stop(pid)
}

/// Waits for child `pid` to end. A stop signal interrupts the wait (our handlers have no
/// `SA_RESTART`); it is passed on to the child once, whose exit status still decides.
fn wait_passing_on_stop(pid: libc::pid_t) -> Result<std::process::ExitStatus, Failure> {
    use std::os::unix::process::ExitStatusExt;
    let mut passed_on = false;
    loop {
        if let (Some(sig), false) = (stdio::stop_signal(), passed_on) {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, sig) };
            passed_on = true;
        }
        let mut status = 0;
        // SAFETY: waiting for our own child; `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(std::process::ExitStatus::from_raw(status));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Failure::new(
                exit::ERROR,
                format!("cannot wait for the command: {e}"),
            ));
        }
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".into(),
    }
}
