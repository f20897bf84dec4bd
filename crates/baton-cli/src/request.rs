//! `baton request`: send a request and print its reply. (`baton serve`, the other side, is
//! `recv`'s `--exec` with the command's output as the reply: see `recv::serve`.)

use crate::format::{parse_duration, SCHEMA};
use crate::{exit, os_bytes, Failure};
use baton::{Domain, Queue};
use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

pub const SERVE_HELP: &str = "\
Each request is handed to CMD as `recv --exec` hands a message: payload on standard input, \
metadata in BATON_* variables. If CMD exits 0, its standard output (up to the queue's maximum \
message size) is the reply and the request is acknowledged after it; if it fails, the request \
is given back and tried again (--max-attempts, --dead-letter), and no reply is sent. A plain \
message (sent with `send`, not `request`) is handled as `recv --exec` would, CMD's output going \
to serve's standard output.

At least once, exactly one reply: if serve dies after CMD ran and before the acknowledgement, \
the request is delivered again (BATON_REDELIVERED=1) and CMD runs again, but only the first \
reply reaches the requester; the second is refused and counted (`baton stat`: replies \
dropped). A request whose requester gave up (its --timeout passed) is still run; its reply is \
dropped and counted.

Examples:
  baton serve svc -- date
  baton serve svc --standby -- sh -c 'tr a-z A-Z'
  baton serve pool --shared -- ./answer     # several at once on a shared queue

Everything after `--` belongs to the command: give serve's own options before it.

Exit status: as `baton recv` (0 --count reached or --timeout after some requests, 1 error, 2 \
bad usage, 3 --timeout with none, 4 no such queue, 5 owned by another process, 130/143/129 \
stopped by a signal).";

#[derive(clap::Args)]
pub struct Args {
    #[arg(help = crate::NAME_HELP)]
    name: String,
    /// The request's payload (any bytes but NUL).
    message: OsString,
    /// Wait at most this long for the reply (`2s`, `500ms`, or seconds).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Priority of the request, 0 (highest) to 3.
    #[arg(long, short, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=3))]
    priority: u8,
    /// Message type of the request.
    #[arg(
        long = "type",
        value_name = "T",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    msg_type: i64,
}

pub fn run(domain: &Domain, args: Args, json: bool) -> Result<(), Failure> {
    let q = Queue::open(domain, &args.name)?;
    let tx = q
        .sender()
        .with_priority(args.priority)?
        .with_type(args.msg_type);
    let reply = tx
        .request(os_bytes(&args.message), args.timeout)
        .map_err(|e| match e {
            baton::RequestError::Timeout => Failure::new(
                exit::TIMEOUT,
                format!(
                    "no reply from queue {} within {} (the request stays in the queue; a reply \
                     that comes later is dropped)",
                    args.name,
                    crate::format::human_duration(args.timeout)
                ),
            ),
            e => e.into(),
        })?;
    if json {
        let (text, base64) = match std::str::from_utf8(reply.payload()) {
            Ok(t) => (Some(t.to_string()), None),
            Err(_) => (None, Some(base64_of(reply.payload()))),
        };
        crate::format::print_json(
            &serde_json::json!({
                "schema": SCHEMA,
                "queue": args.name,
                "type": reply.msg_type(),
                "version": reply.version(),
                "replier_pid": reply.replier_pid(),
                "sent_monotonic_ns": reply.sent_ns(),
                "len": reply.payload().len(),
                "reply": text,
                "reply_base64": base64,
            }),
            false,
        )?;
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(reply.payload())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(exit::ERROR, format!("cannot write the reply: {e}")))
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
