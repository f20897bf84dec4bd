//! Failover time under `baton supervise` (issue 18, point 10): from SIGKILL of the active
//! component to its standby having the next waiting message, under the supervisor, next to
//! the bare takeover (the same two receivers with no supervisor) measured in the same run, the
//! trials of the two kinds alternating so that machine noise falls on both alike; and from a
//! hang (SIGSTOP) of the active to the standby having the next message, which only the
//! supervisor's queue probe can see, for a given probe interval.
//!
//! `cargo bench --bench supervise` (100 trials of each kind; `-- --trials N`;
//! `-- --probe-interval-ms M`, 100 by default, which is also the probe's stall threshold)
//!
//! Every process is a real one: this binary re-runs itself in a role named by
//! `BATON_BENCH_ROLE`: `receiver` (a component: it waits on the queue as a standby, owns it
//! when it can, and answers each request with the `CLOCK_MONOTONIC` time at which it had the
//! message) and `supervisor` (a `baton_supervise::Supervisor`, as `baton supervise` runs it).
//! Each trial sends a request right after the kill (or the stop) and reads the time in the
//! reply; t0 is read just before `kill(2)`.

use baton::{monotonic_ns, Attributes, Domain, Queue};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/latency.rs"]
mod latency;

const ROLE: &str = "BATON_BENCH_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let arg = std::env::args().nth(1).unwrap_or_default();
        child(&role, &arg);
        return;
    }
    let flag = |name: &str, default: u64| {
        std::env::args()
            .skip_while(|a| a != name)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let trials = flag("--trials", 100) as usize;
    let interval = Duration::from_millis(flag("--probe-interval-ms", 100));
    if let Err(e) = run(trials, interval) {
        eprintln!("supervise bench failed: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn run(trials: usize, interval: Duration) -> Res<()> {
    let bare = Domain::new(&format!("bench-sup-bare-{}", std::process::id()))?;
    let sup = Domain::new(&format!("bench-sup-{}", std::process::id()))?;
    let bare_q = Queue::create(&bare, "q", &Attributes::default())?;
    let sup_q = Queue::create(&sup, "q", &Attributes::default())?;
    let config = std::env::temp_dir().join(format!("baton-bench-sup-{}.toml", std::process::id()));
    let mut supervisor = None;
    let result = (|| -> Res<(Vec<u64>, Vec<u64>, Vec<u64>)> {
        std::fs::write(&config, configuration(&sup, interval)?)?;
        supervisor = Some(spawn("supervisor", config.to_str().ok_or("path")?, &sup)?);
        let (mut bare_t, mut killed, mut hung) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..trials {
            bare_t.push(bare_trial(&bare, &bare_q)?);
            killed.push(supervised_trial(&sup_q, libc::SIGKILL)?);
            if (i + 1) % 25 == 0 {
                eprintln!("{} of {trials} kill trials", i + 1);
            }
        }
        for i in 0..trials {
            hung.push(supervised_trial(&sup_q, libc::SIGSTOP)?);
            if (i + 1) % 25 == 0 {
                eprintln!("{} of {trials} hang trials", i + 1);
            }
        }
        Ok((bare_t, killed, hung))
    })();
    if let Some(mut s) = supervisor {
        // SIGTERM: the supervisor stops its components and exits.
        // SAFETY: kill with our child's pid.
        unsafe { libc::kill(s.id() as i32, libc::SIGTERM) };
        let _ = s.wait();
    }
    let _ = std::fs::remove_file(&config);
    drop((bare_q, sup_q));
    for d in [&bare, &sup] {
        for name in ["q", "supervise.bench"] {
            let _ = Queue::remove(d, name);
        }
        let _ = std::fs::remove_file(baton_supervise::supervisor::state_path(d, "bench"));
    }
    let (mut bare_t, mut killed, mut hung) = result?;
    println!(
        "failover under baton supervise, {trials} trials each; time to the standby having the \
         next waiting message"
    );
    latency::print_table(
        "ms",
        1e6,
        3,
        &mut [
            ("bare takeover, SIGKILL of the owner", &mut bare_t),
            ("under the supervisor, SIGKILL of the active", &mut killed),
            (
                &format!("under the supervisor, SIGSTOP, probe {interval:?}"),
                &mut hung,
            ),
        ],
    );
    latency::print_ratio("supervised / bare (SIGKILL)", &killed, &bare_t);
    Ok(())
}

/// Two receivers of `q` in one redundancy set, with the queue probe at `interval` (its stall
/// threshold too), restarted in place at every failure (the window forgets a restart before
/// the next trial, so the back-off stays at its first 10 ms).
fn configuration(domain: &Domain, interval: Duration) -> Res<String> {
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().ok_or("the bench's path is not UTF-8")?;
    let ms = interval.as_millis();
    let component = |name: &str| {
        format!(
            r#"
[[component]]
name = "{name}"
command = ["{exe}", "receiver"]
env = {{ {ROLE} = "receiver" }}
queues = ["q"]
redundancy = "pair"
probe = "queue"
probe_interval = "{ms}ms"
probe_timeout = "{ms}ms"
start_timeout = "100ms"
retry_count = 1
retry_interval = "30ms"
restart_backoff = "10ms"
stop_timeout = "1s"
"#
        )
    };
    Ok(format!(
        "[supervisor]\nname = \"bench\"\ndomain = \"{domain}\"\nfailover_limit = 1000000\n{}{}",
        component("a"),
        component("b")
    ))
}

/// Spawns this binary in `role` with `arg`, in `domain`.
fn spawn(role: &str, arg: &str, domain: &Domain) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .arg(arg)
        .env(ROLE, role)
        .env("BATON_DOMAIN", domain.as_str())
        .stdin(Stdio::null())
        .spawn()
}

/// Waits until the queue has an owner and a standby waiting, then a little more so that the
/// standby is asleep in the kernel; the owner's pid.
fn ready(q: &Queue) -> Res<u32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = q.status();
        if let (Some(owner), 1) = (st.owner_pid, st.standbys) {
            std::thread::sleep(Duration::from_millis(3));
            return Ok(owner);
        }
        if Instant::now() > deadline {
            return Err("no owner with a standby waiting after 20 s".into());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Sends `sig` to `pid` at t0, then a request; the time in its reply, less t0.
fn kill_and_time(q: &Queue, pid: u32, sig: i32) -> Res<u64> {
    let t0 = monotonic_ns();
    // SAFETY: kill with the pid of one of our receivers.
    if unsafe { libc::kill(pid as i32, sig) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let reply = q.sender().request(b"t", Duration::from_secs(20))?;
    let t1: u64 = std::str::from_utf8(reply.payload())?.parse()?;
    Ok(t1.saturating_sub(t0))
}

fn bare_trial(domain: &Domain, q: &Queue) -> Res<u64> {
    let mut owner = spawn("receiver", "", domain)?;
    let mut standby = None;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while q.status().owner_pid.is_none() {
            if Instant::now() > deadline {
                return Err("the receiver never owned the queue".into());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        standby = Some(spawn("receiver", "", domain)?);
        let pid = ready(q)?;
        kill_and_time(q, pid, libc::SIGKILL)
    })();
    let _ = owner.kill();
    let _ = owner.wait();
    if let Some(mut s) = standby {
        let _ = s.kill();
        let _ = s.wait();
    }
    result
}

/// One trial under the supervisor: `sig` to the queue's owner (the active); SIGKILL is seen
/// by the standby's lock at once, SIGSTOP only by the supervisor's probe.
fn supervised_trial(q: &Queue, sig: i32) -> Res<u64> {
    let pid = ready(q)?;
    kill_and_time(q, pid, sig)
}

fn child(role: &str, arg: &str) {
    match role {
        "receiver" => receiver(),
        "supervisor" => {
            let cfg = baton_supervise::Config::load(std::path::Path::new(arg)).unwrap();
            let mut s = baton_supervise::Supervisor::start(
                cfg,
                Box::new(|r| {
                    if !matches!(
                        r.event.as_str(),
                        "started" | "exited" | "failed" | "restart" | "role" | "probe"
                    ) {
                        eprintln!("supervisor: {:?} {} {}", r.component, r.event, r.detail);
                    }
                }),
            )
            .unwrap();
            on_term();
            s.run(|| STOP.load(std::sync::atomic::Ordering::Relaxed), || None);
        }
        other => panic!("unknown role {other}"),
    }
}

/// A component: waits as a standby (owning the queue when it is free), and answers each
/// request with the time at which it had it.
fn receiver() {
    let q = Queue::open(&Domain::from_env().unwrap(), "q").unwrap();
    let mut rx = q.standby(None).unwrap();
    loop {
        let m = rx.recv().unwrap();
        let t1 = monotonic_ns();
        let _ = m.reply(t1.to_string().as_bytes());
        let _ = m.ack();
    }
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn on_term() {
    // SAFETY: a handler that only stores to an atomic (async-signal-safe).
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_sigterm as *const () as usize;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGTERM, &act, std::ptr::null_mut());
    }
}
