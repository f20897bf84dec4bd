//! Failpoints: named steps where a test can make the process stop, so that kill tests can
//! prove recovery from every step of send, receive, acknowledge and recovery.
//!
//! With the `failpoints` feature, `BATON_FAILPOINT=<name>[@<hit>][:<action>]` makes the process
//! abort (default), pause forever (`pause`, to be killed), or panic (`panic`) when it reaches
//! `<name>` for the `<hit>`-th time (default 1). Without the feature they compile to nothing.
//! They live in the lowest layer so that every layer above can name its steps.

/// Stops the process here if `BATON_FAILPOINT` names this point and hit (see the module).
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) {
    use std::sync::atomic::{AtomicU64 as LocalCounter, Ordering as Local}; // facade-exempt: process-local
    use std::sync::OnceLock;
    static SPEC: OnceLock<Option<(String, u64, String)>> = OnceLock::new();
    static HITS: LocalCounter = LocalCounter::new(0);
    let spec = SPEC.get_or_init(|| {
        let v = std::env::var("BATON_FAILPOINT").ok()?;
        let (point, action) = v.split_once(':').unwrap_or((&v, "abort"));
        let (point, hit) = match point.split_once('@') {
            Some((p, h)) => (p, h.parse().ok()?),
            None => (point, 1),
        };
        Some((point.to_string(), hit, action.to_string()))
    });
    let Some((point, hit, action)) = spec else {
        return;
    };
    if point != name || HITS.fetch_add(1, Local::Relaxed) + 1 != *hit {
        return;
    }
    eprintln!("baton: failpoint {name}: {action}");
    match action.as_str() {
        "pause" => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        "panic" => panic!("failpoint {name}"),
        _ => std::process::abort(),
    }
}

/// Without the `failpoints` feature a failpoint is nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) {}
