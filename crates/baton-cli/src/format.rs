//! How the CLI reads and writes durations, sizes, messages and JSON.

use base64::Engine as _;
use baton::Message;
use std::io::{self, Write};
use std::time::Duration;

/// The version of every JSON shape the CLI prints (each object carries it as `schema`). It
/// changes when a field is removed or changes meaning; new fields may appear without a change.
pub const SCHEMA: u32 = 1;

/// The longest duration accepted: 100 years, far beyond any wait, and far from overflowing
/// a deadline (`Instant + duration`).
pub const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A capacity threshold as a user types it: `P:REACHED:AVAILABLE`, sizes with suffixes
/// (`3:48K:16K`).
pub fn parse_threshold(s: &str) -> Result<(u8, u64, u64), String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [p, r, a] = parts[..] else {
        return Err(format!(
            "{s:?}: a threshold is P:REACHED:AVAILABLE (e.g. 3:48K:16K)"
        ));
    };
    let p: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= 3)
        .ok_or_else(|| format!("{p:?}: a priority is 0 to 3"))?;
    Ok((p, parse_size(r)?, parse_size(a)?))
}

/// A retention as a user types it: a duration, or `none` (kept until removed).
#[derive(Debug, Clone, Copy)]
pub struct Retention(pub Option<Duration>);

/// Parses a [`Retention`].
pub fn parse_retention(s: &str) -> Result<Retention, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Retention(None));
    }
    parse_duration(s).map(|d| Retention(Some(d)))
}

/// A duration as a user types it: `5s`, `250ms`, `1m30s`, or a bare number of seconds (`0.5`);
/// at most [`LONGEST`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = if let Ok(x) = s.parse::<f64>() {
        Duration::try_from_secs_f64(x)
            .map_err(|_| format!("{s:?} is not a duration (a negative or huge number)"))?
    } else {
        humantime::parse_duration(s).map_err(|e| {
            format!("{s:?} is not a duration ({e}); write e.g. 5s, 250ms, 1m30s or 0.5")
        })?
    };
    if d > LONGEST {
        return Err(format!(
            "{s:?} is longer than 100 years; leave the option out to wait without limit"
        ));
    }
    Ok(d)
}

/// A duration for people: `0.5 s`, `12 s`, `250 µs`, `0 s`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if d.is_zero() {
        "0 s".into()
    } else if secs >= 1e-3 {
        format!("{} s", trim(format!("{secs:.3}")))
    } else if secs >= 1e-6 {
        format!("{} µs", trim(format!("{:.1}", secs * 1e6)))
    } else {
        format!("{} ns", d.as_nanos())
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A size for people: `512 B`, `64 KiB`, `1.5 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = bytes as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{} {}", trim(format!("{x:.1}")), UNITS[unit])
    }
}

/// A size as a user types it: `65536`, `64K`, `1M`, `2G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
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

/// One capacity for all four priorities, or four (`P0,P1,P2,P3`).
pub fn parse_capacity(s: &str) -> Result<[u64; 4], String> {
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

/// An octal file mode such as `600` or `0o640`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal mode like 600"))
}

/// Nanoseconds since the Unix epoch now (`CLOCK_REALTIME`).
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The wall-clock time of a `CLOCK_MONOTONIC` instant of this boot: now on the wall clock,
/// less how long ago the instant was. Exact unless the wall clock was set in between.
pub fn unix_ns_of_monotonic(monotonic_ns: u64) -> u64 {
    let age = baton::monotonic_ns().saturating_sub(monotonic_ns);
    unix_now_ns().saturating_sub(age)
}

/// How `recv` writes each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// The payload and a newline.
    Lines,
    /// The payload and a NUL byte.
    Nul,
    /// One JSON object per line, with the metadata.
    Json,
}

/// One message as `recv` writes it: the caller writes it in one go, and acknowledges the
/// message only once it is written (and, into a pipe, read).
pub fn render_message(
    queue: &str,
    msg: &Message,
    format: MessageFormat,
    mark_redelivered: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 16);
    match format {
        MessageFormat::Json => {
            out.extend_from_slice(
                message_json(queue, msg.meta(), msg.payload())
                    .to_string()
                    .as_bytes(),
            );
            out.push(b'\n');
        }
        MessageFormat::Lines | MessageFormat::Nul => {
            if mark_redelivered {
                out.extend_from_slice(if msg.redelivered() {
                    b"redelivered\t"
                } else {
                    b"new\t"
                });
            }
            out.extend_from_slice(msg.payload());
            out.push(if format == MessageFormat::Nul {
                0
            } else {
                b'\n'
            });
        }
    }
    out
}

/// A message as JSON: the payload as text when it is UTF-8 (`payload`), else in base64
/// (`payload_base64`); the other of the two is null, so every message has the same fields.
pub fn message_json(queue: &str, meta: &baton::Metadata, payload: &[u8]) -> serde_json::Value {
    let (text, base64) = match std::str::from_utf8(payload) {
        Ok(t) => (Some(t.to_string()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(payload)),
        ),
    };
    serde_json::json!({
        "schema": SCHEMA,
        "queue": queue,
        "id": meta.id,
        "priority": meta.priority,
        "type": meta.msg_type,
        "version": meta.version,
        "sender_pid": meta.sender_pid,
        "sent_unix_ns": unix_ns_of_monotonic(meta.sent_ns),
        "sent_monotonic_ns": meta.sent_ns,
        "redelivered": meta.redelivered,
        "request": meta.reply_to.is_some(),
        "len": payload.len(),
        "payload": text,
        "payload_base64": base64,
    })
}

/// An object as one line of JSON, with the `schema` field added.
pub fn with_schema(v: &impl serde::Serialize) -> io::Result<String> {
    let mut out = serde_json::json!({ "schema": SCHEMA });
    if let (Some(o), serde_json::Value::Object(fields)) = (
        out.as_object_mut(),
        serde_json::to_value(v).map_err(io::Error::other)?,
    ) {
        o.extend(fields);
    }
    serde_json::to_string(&out).map_err(io::Error::other)
}

/// Prints a JSON value: pretty for one answer, one line per object for a stream.
pub fn print_json(v: &serde_json::Value, one_line: bool) -> io::Result<()> {
    let text = if one_line {
        serde_json::to_string(v)
    } else {
        serde_json::to_string_pretty(v)
    }
    .map_err(io::Error::other)?;
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("1.5e19").unwrap_err().contains("100 years"));
        assert!(parse_duration("200years")
            .unwrap_err()
            .contains("100 years"));
        assert!(parse_duration("1.5e19").unwrap_err().contains("100 years"));
        assert!(parse_duration("200years")
            .unwrap_err()
            .contains("100 years"));
        assert!(parse_duration("soon").unwrap_err().contains("soon"));
    }

    #[test]
    fn durations_print_for_people() {
        assert_eq!(human_duration(Duration::from_millis(500)), "0.5 s");
        assert_eq!(human_duration(Duration::ZERO), "0 s");
        assert_eq!(human_duration(Duration::from_secs(12)), "12 s");
        assert_eq!(human_duration(Duration::from_micros(250)), "250 µs");
    }

    #[test]
    fn sizes_print_for_people() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(64 * 1024), "64 KiB");
        assert_eq!(human_size(1536 * 1024), "1.5 MiB");
    }
}
