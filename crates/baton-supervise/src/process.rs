//! A component is its whole process tree, as Sun Cluster's process monitor sees it: it has
//! ended when its last process has, and one that daemonizes (forks, and its parent exits) is
//! still followed.
//!
//! Each component's processes carry a marker in their environment
//! (`BATON_SUPERVISE_MARK=<domain>/<supervisor>/<component>/<start>`), which every descendant inherits
//! unless it clears its environment on purpose; the supervisor finds the tree by that marker in
//! `/proc`, in any process group or session. It is the children's subreaper
//! (`PR_SET_CHILD_SUBREAPER`), so an orphaned descendant becomes its child and is reaped by it,
//! not left a zombie. (A cgroup would be exact; this needs none, and a process that clears its
//! environment is the one it cannot follow: documented.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// The environment variable that marks a component's processes.
pub const MARK_ENV: &str = "BATON_SUPERVISE_MARK";

/// Makes this process the subreaper of its descendants (see the module).
///
/// # Errors
///
/// The `prctl` error.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with an integer argument; no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it.
    Signaled(i32),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(c) => write!(f, "exit status {c}"),
            Ended::Signaled(s) => write!(f, "signal {s}"),
        }
    }
}

/// Methods running now, by pid, with how each ended once [`reap`] (run by another thread)
/// found it first: their ends are their callers', not the supervisor's loop's.
static METHODS: std::sync::Mutex<BTreeMap<i32, Option<Ended>>> =
    std::sync::Mutex::new(BTreeMap::new());

fn methods() -> std::sync::MutexGuard<'static, BTreeMap<i32, Option<Ended>>> {
    METHODS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reaps every child that has ended (the components' first processes, and orphans handed to
/// this subreaper); returns each with how it ended. A method running in another thread
/// ([`run_method`]) is not returned: its end is kept for it, and what it left in its process
/// group is killed then, before its pid can be reused.
pub fn reap() -> Vec<(i32, Ended)> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut running = methods();
    let mut out = Vec::new();
    loop {
        // Who ended is looked at first (WNOWAIT), so a method's process group is killed
        // while its leader is still a zombie: its id cannot have been reused yet.
        // SAFETY: waitid with a zeroed siginfo we own.
        let pid = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            if rc != 0 || info.si_pid() == 0 {
                return out;
            }
            info.si_pid()
        };
        let method = running.contains_key(&pid);
        if method {
            // SAFETY: kill of the process group of a method we made, its leader a zombie.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let ended = match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Ended::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Ended::Signaled(sig as i32),
            Ok(_) => continue,
            Err(_) => return out,
        };
        match running.get_mut(&pid) {
            Some(slot) => *slot = Some(ended),
            None => out.push((pid, ended)),
        }
    }
}

/// Kills every method still running (the supervisor is ending).
pub fn kill_methods() {
    // Not one `reap` took already (its thread has yet to see it): its pid may be reused.
    for (&pid, _) in methods().iter().filter(|(_, ended)| ended.is_none()) {
        // SAFETY: kill of the process group of a method we made and have not reaped.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

/// The pids of the live processes whose environment carries `mark` (zombies excluded).
pub fn marked(mark: &str) -> BTreeSet<i32> {
    let want = format!("{MARK_ENV}={mark}");
    marked_where(|v| v == want.as_bytes())
}

/// The pids of the live processes whose mark starts with `prefix` (every component of a
/// supervisor: `<domain>/<supervisor>/`).
pub fn marked_prefix(prefix: &str) -> BTreeSet<i32> {
    let want = format!("{MARK_ENV}={prefix}");
    marked_where(|v| v.starts_with(want.as_bytes()))
}

/// The live processes with an environment variable `matches` takes.
fn marked_where(matches: impl Fn(&[u8]) -> bool) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let has = |env: &[u8]| env.split(|&b| b == 0).any(&matches);
        if environ(pid, has).is_some_and(|env| has(&env)) && !is_zombie(pid) {
            out.insert(pid);
        }
    }
    out
}

fn has_mark(pid: i32, want: &str) -> bool {
    let has = |env: &[u8]| env.split(|&b| b == 0).any(|v| v == want.as_bytes());
    environ(pid, has).is_some_and(|env| has(&env))
}

/// The environment of process `pid` (`NUL`-separated) once it shows `enough`, or all of it,
/// read through an exec under way. In the middle of an exec the kernel shows the new
/// environment growing from nothing, a variable at a time (its end moves over each), and a
/// marked process read then looked unmarked: a daemon that execs was taken for gone. A read
/// without `enough` is believed when it was all of the environment (see [`look`]); otherwise
/// it is read again, for at most about 50 ms.
fn environ(pid: i32, enough: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    for _ in 0..500 {
        match look(pid, None, &enough) {
            Look::Env(env) => return Some(env),
            Look::Gone => return None,
            Look::Again => std::thread::sleep(Duration::from_micros(100)),
        }
    }
    None
}

/// What one look at a process's environment found.
enum Look {
    /// Its environment: it shows `enough`, or is all of it.
    Env(Vec<u8>),
    /// Perhaps part of it (an exec under way): to be read again.
    Again,
    /// No environment: the process is gone, or not readable.
    Gone,
}

/// One look at the environment of process `pid` (of its thread `tid`, if given). A read
/// without `enough` is believed when it was all of the environment: the process is a kernel
/// thread, or its environment read as long as its `stat` said and ends where the exec's file
/// name begins (`AT_EXECFN`, in 8- or 4-byte words: an exec writes the end last), or it was
/// not running (asleep, stopped) and had not run when its `stat` was read again (an exec
/// faults pages in: its fault counts would have moved; a `stat` read while it slept says
/// nothing of an exec it woke for a moment later). A process whose first thread has ended
/// while another lives on shows a zombie without memory, its threads counting it (for a
/// moment when another thread execs, which takes the pid next; for good when the first called
/// `pthread_exit`): it is read through its other threads, which share its memory.
fn look(pid: i32, tid: Option<i32>, enough: &impl Fn(&[u8]) -> bool) -> Look {
    const PF_EXITING: u64 = 0x0000_0004;
    const PF_KTHREAD: u64 = 0x0020_0000;
    // Fields after the command's closing parenthesis, from the state (field 3) on.
    fn fields(stat: &str) -> Option<Vec<&str>> {
        Some(stat.rsplit_once(')')?.1.split_whitespace().collect())
    }
    fn field(fields: &[&str], n: usize) -> Option<u64> {
        fields.get(n - 3).and_then(|f| f.parse::<u64>().ok())
    }
    let dir = match tid {
        Some(t) => format!("/proc/{pid}/task/{t}"),
        None => format!("/proc/{pid}"),
    };
    // The stat first: an exec that ends between the two reads does not vouch for a read of
    // its middle.
    let Ok(stat) = std::fs::read_to_string(format!("{dir}/stat")) else {
        return Look::Gone;
    };
    let Some(before) = fields(&stat) else {
        return Look::Gone;
    };
    let state = before.first().copied();
    let read = std::fs::read(format!("{dir}/environ"));
    // No memory: a kernel thread, a process exiting or a zombie (read as empty by some
    // kernels), or a first thread ended.
    let no_memory =
        state == Some("Z") || matches!(&read, Err(e) if e.raw_os_error() == Some(libc::ESRCH));
    let env = match read {
        _ if no_memory && tid.is_none() => match field(&before, 20) {
            // Its other threads live on.
            Some(2..) => {
                let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                    return Look::Again;
                };
                for t in tasks
                    .flatten()
                    .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
                    .filter(|&t| t != pid)
                {
                    if let Look::Env(env) = look(pid, Some(t), enough) {
                        return Look::Env(env);
                    }
                }
                return Look::Again;
            }
            // Taken out of its thread group: released, or its pid taken by its exec'ing
            // thread.
            Some(0) => return Look::Again,
            // Not exiting, no kernel thread, and no memory: for a moment in an exec from
            // another thread, once that thread has taken the pid.
            _ if state != Some("Z")
                && field(&before, 9)
                    .is_some_and(|flags| flags & (PF_EXITING | PF_KTHREAD) == 0) =>
            {
                return Look::Again
            }
            _ => match read {
                Ok(env) => return Look::Env(env),
                Err(_) => return Look::Gone,
            },
        },
        Ok(env) => env,
        Err(_) => return Look::Gone,
    };
    if enough(&env) {
        return Look::Env(env);
    }
    let kernel_thread = field(&before, 9).is_some_and(|flags| flags & PF_KTHREAD != 0);
    let whole = match (field(&before, 50), field(&before, 51)) {
        (Some(start), Some(end)) => {
            end != 0
                && end.checked_sub(start) == Some(env.len() as u64)
                && exec_file_name_at(&dir).contains(&Some(end))
        }
        _ => false,
    };
    if kernel_thread || whole {
        return Look::Env(env);
    }
    if !matches!(state, Some("R" | "D")) {
        let Ok(again) = std::fs::read_to_string(format!("{dir}/stat")) else {
            return Look::Gone;
        };
        let after = fields(&again).unwrap_or_default();
        let still = !matches!(after.first(), Some(&("R" | "D" | "Z")) | None)
            && [10, 12]
                .iter()
                .all(|&n| field(&before, n) == field(&after, n));
        if still {
            return Look::Env(env);
        }
    }
    Look::Again
}

/// Where the exec's file name lies in the memory of the process of `/proc` directory `dir`
/// (`AT_EXECFN` of its auxiliary vector), right after its environment's strings: as read in
/// 8-byte words, and in 4-byte ones (a 32-bit process's).
fn exec_file_name_at(dir: &str) -> [Option<u64>; 2] {
    const AT_EXECFN: u64 = 31;
    let Ok(auxv) = std::fs::read(format!("{dir}/auxv")) else {
        return [None, None];
    };
    let find = |w: usize| {
        let word = |b: &[u8]| match w {
            8 => u64::from_ne_bytes(b.try_into().unwrap_or_default()),
            _ => u64::from(u32::from_ne_bytes(b.try_into().unwrap_or_default())),
        };
        auxv.chunks_exact(2 * w)
            .find_map(|pair| (word(&pair[..w]) == AT_EXECFN).then(|| word(&pair[w..])))
    };
    [find(8), find(4)]
}

/// The mark of process `pid` (what follows `BATON_SUPERVISE_MARK=`), if it has one.
pub fn mark_of(pid: i32) -> Option<String> {
    let want = format!("{MARK_ENV}=");
    let env = environ(pid, |env| {
        env.split(|&b| b == 0)
            .any(|v| v.starts_with(want.as_bytes()))
    })?;
    env.split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(want.as_bytes()))
        .map(|m| String::from_utf8_lossy(m).into_owned())
}

/// The pids of process `pid` in each pid namespace it is in, outermost (this process's, if
/// it sees it) first, innermost (what the process itself sees) last: `NSpid` of its status.
pub fn ns_pids(pid: i32) -> Option<Vec<i32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().map(|p| p.parse().ok()).collect()
}

/// Whether process `pid` lives (exists and is not a zombie).
pub fn lives(pid: i32) -> bool {
    !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    // The state follows the command's closing parenthesis; the number of threads is the 18th
    // field after it. A first thread ended while another lives on (exec'ing from it, or after
    // `pthread_exit`) shows a zombie its live threads count: the process lives. One taken out
    // of its thread group (0 threads) is being released, or its pid taken by its exec'ing
    // thread: looked at again.
    for _ in 0..500 {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        let fields: Vec<&str> = s
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        match (
            fields.first(),
            fields.get(17).and_then(|n| n.parse::<u64>().ok()),
        ) {
            (Some(&"Z"), Some(0)) => std::thread::sleep(Duration::from_micros(100)),
            (Some(&"Z"), Some(2..)) => return false,
            (Some(&"Z"), _) | (None, _) => return true,
            _ => return false,
        }
    }
    true
}

/// Whether any process of `pids` still carries `mark` (the pids of a dead process may be
/// reused: the mark tells).
pub fn any_alive(pids: &BTreeSet<i32>, mark: &str) -> bool {
    let want = format!("{MARK_ENV}={mark}");
    pids.iter().any(|&p| has_mark(p, &want) && !is_zombie(p))
}

/// Sends `sig` to every process of the tree marked `mark` (found anew, so a process forked
/// since is included).
pub fn signal_tree(mark: &str, sig: i32) -> usize {
    let pids = marked(mark);
    for &p in &pids {
        // SAFETY: kill with a pid and a signal number.
        unsafe { libc::kill(p, sig) };
    }
    pids.len()
}

/// Stops the tree marked `mark`: SIGTERM (and SIGCONT, so a stopped process acts on it at
/// once rather than at the SIGKILL), then SIGKILL after `grace` to what is left. Returns once
/// none of it lives (or after `grace` and a second more), with every child it reaped meanwhile
/// (any of the supervisor's children: the caller must see their ends, or a component whose
/// first process ended during another's stop would be taken for running for ever).
pub fn stop_tree(mark: &str, grace: Duration) -> Vec<(i32, Ended)> {
    let mut reaped = Vec::new();
    if signal_tree(mark, libc::SIGTERM) == 0 {
        reaped.extend(reap()); // what died of itself (a zombie is not marked) is reaped too
        return reaped;
    }
    signal_tree(mark, libc::SIGCONT);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reaped.extend(reap());
        if marked(mark).is_empty() {
            reaped.extend(reap()); // one that died since the last reap is a zombie, not marked
            return reaped;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    // SIGKILL again while any is left: one forked since the last scan is found by the next.
    while Instant::now() < deadline && signal_tree(mark, libc::SIGKILL) > 0 {
        reaped.extend(reap());
        std::thread::sleep(Duration::from_millis(5));
    }
    reaped.extend(reap());
    reaped
}

/// Runs a method (validate, stop, monitor_check, a probe) to its end, at most `timeout`
/// (then its process group is killed), in a process group of its own, which is killed when
/// it ends too (a method leaves nothing running); its status and what it printed (standard
/// output and error, the first 4 KiB, read until a moment after it ended: a child that
/// escaped its group may hold the pipes open).
pub fn run_method(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&Path>,
    timeout: Duration,
) -> (Option<Ended>, String) {
    use std::io::Read;
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    // Spawned under the lock `reap` takes, and registered before it is let go: `reap`, in
    // another thread, keeps the method's end for it.
    let mut child = {
        let mut running = methods();
        match cmd.spawn() {
            Ok(c) => {
                running.insert(c.id() as i32, None);
                c
            }
            Err(e) => return (None, format!("cannot run {:?}: {e}", argv[0])),
        }
    };
    let pid = child.id() as i32;
    // The output is read by a thread per pipe into one buffer; it is not waited for past a
    // moment after the method ended: a child the method left behind (or one that escaped its
    // process group) may hold the pipes open for ever, and the supervisor must go on.
    let text = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let pipes: Vec<Box<dyn Read + Send>> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    let readers = pipes.len();
    for mut pipe in pipes {
        let text = text.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut t = text.lock().unwrap_or_else(|e| e.into_inner());
                let room = 4096usize.saturating_sub(t.len());
                t.extend_from_slice(&buf[..n.min(room)]);
            }
            let _ = done.send(());
        });
    }
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let ended = loop {
        let state = {
            let mut running = methods();
            let state = match running.get(&pid).copied().flatten() {
                // `reap` found it (and killed its group).
                Some(ended) => Some((!timed_out).then_some(ended)),
                _ if exited(pid) => {
                    // What it left behind in its process group goes with it, killed while
                    // its leader is a zombie, so the group's id cannot be reused yet.
                    // SAFETY: kill of a process group we made.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    let ended = child.try_wait().ok().flatten().map(ended_of);
                    Some(if timed_out { None } else { ended })
                }
                _ if !timed_out && Instant::now() >= deadline => {
                    // Past its time: the method's process group goes; its leader is reaped
                    // by a later round (here or by `reap`), never outside the lock.
                    // SAFETY: kill of a process group we made, its leader not reaped.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    timed_out = true;
                    None
                }
                _ => None,
            };
            // Its pid leaves the registry under the lock that saw it reaped: let go between,
            // the pid could be another method's already (whose entry this would remove).
            if state.is_some() {
                running.remove(&pid);
            }
            state
        };
        match state {
            Some(e) => break e,
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let grace = Instant::now() + Duration::from_millis(100);
    for _ in 0..readers {
        if done_rx
            .recv_timeout(grace.saturating_duration_since(Instant::now()))
            .is_err()
        {
            break;
        }
    }
    let text =
        String::from_utf8_lossy(&text.lock().unwrap_or_else(|e| e.into_inner())).into_owned();

    (ended, text)
}

/// Whether child `pid` has ended (a zombie, not reaped: it is left for `try_wait`).
fn exited(pid: i32) -> bool {
    // SAFETY: waitid with a zeroed siginfo we own; WNOWAIT leaves the child as it is.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc == 0 && info.si_pid() != 0
    }
}

fn ended_of(s: std::process::ExitStatus) -> Ended {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => Ended::Exited(c),
        (_, Some(sig)) => Ended::Signaled(sig),
        _ => Ended::Exited(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `reap` takes any child of this process: the tests that reap run one at a time.
    static REAPING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn alone() -> std::sync::MutexGuard<'static, ()> {
        REAPING.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many of `looks` looks found the process `cmd` starts (with a mark of its own)
    /// unmarked or dead; the process must still run after them.
    fn missed_looks(mut cmd: std::process::Command, looks: usize) -> usize {
        let mark = format!("test/process/looks/{}/{looks}", std::process::id());
        let want = format!("{MARK_ENV}={mark}");
        let mut looked_at = cmd.env(MARK_ENV, &mark).spawn().unwrap();
        let pid = looked_at.id() as i32;
        std::thread::sleep(Duration::from_millis(100));
        let missed = (0..looks)
            .filter(|_| !(has_mark(pid, &want) && lives(pid)))
            .count();
        let ran = looked_at.try_wait().unwrap().is_none();
        let _ = looked_at.kill();
        let _ = looked_at.wait();
        assert!(ran, "the process looked at ended");
        missed
    }

    /// Runs `f` while another thread reaps all along, as the supervisor's loop does while a
    /// probe runs in its thread; what that thread was handed.
    fn while_another_thread_reaps(f: impl FnOnce()) -> Vec<(i32, Ended)> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reaper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut others = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    others.extend(reap());
                }
                others
            })
        };
        f();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reaper.join().unwrap()
    }

    /// A marked process that execs over and over is found marked at every look: in the middle
    /// of an exec the kernel shows an empty environment for a moment, which one plain read in
    /// about 500 took for an unmarked process. A process whose environment is empty is read as
    /// empty.
    #[test]
    fn a_process_is_found_marked_through_its_execs() {
        let _alone = alone();
        let mut execing = std::process::Command::new("sh");
        execing.args(["-c", r#"exec sh -c "$0" "$0""#, r#"exec sh -c "$0" "$0""#]);
        let missed = missed_looks(execing, 20_000);
        assert_eq!(missed, 0, "not found marked in {missed} of 20000 looks");
        let mut empty = std::process::Command::new("sleep")
            .arg("60")
            .env_clear()
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // Read whole (not looked at again until the reading gives up: None).
        assert_eq!(environ(empty.id() as i32, |_| false), Some(Vec::new()));
        let _ = empty.kill();
        let _ = empty.wait();
        // Running, so possibly in an exec: read whole by where its environment ends.
        for vars in [&[][..], &[("A", "1"), (MARK_ENV, "x")][..]] {
            let mut busy = std::process::Command::new("/bin/sh")
                .args(["-c", "while :; do :; done"])
                .env_clear()
                .envs(vars.iter().copied())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let env = environ(busy.id() as i32, |_| false);
            let _ = busy.kill();
            let _ = busy.wait();
            let want: Vec<u8> = vars
                .iter()
                .flat_map(|(k, v)| format!("{k}={v}\0").into_bytes())
                .collect();
            assert_eq!(env, Some(want));
        }
    }

    /// A marked process that execs from a thread other than its first is found marked, and
    /// alive, at every look: its first thread exits first (the exec's thread takes its pid
    /// after), and for that moment `/proc/<pid>` shows a zombie with no memory, while the
    /// exec's thread lives on with the marked environment.
    #[test]
    fn a_process_that_execs_from_a_thread_is_found_marked() {
        const EXECING: &str = "BATON_TEST_EXEC_FROM_A_THREAD";
        let this = "process::tests::a_process_that_execs_from_a_thread_is_found_marked";
        if std::env::var_os(EXECING).is_some() {
            // The process looked at: this test again, which execs itself from a second
            // thread, for ever.
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            std::thread::spawn(move || {
                use std::os::unix::process::CommandExt;
                let e = std::process::Command::new(std::env::current_exe().unwrap())
                    .args(args)
                    .exec();
                panic!("exec: {e}");
            })
            .join()
            .unwrap();
            return;
        }
        let _alone = alone();
        let mut execing = std::process::Command::new(std::env::current_exe().unwrap());
        execing
            .args(["--exact", this, "--test-threads=1", "-q"])
            .env(EXECING, "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let missed = missed_looks(execing, 20_000);
        assert_eq!(
            missed, 0,
            "not found marked and alive in {missed} of 20000 looks"
        );
    }

    /// A marked process that sleeps a moment, then execs, over and over, is found marked at
    /// every look: a `stat` read while it sleeps says nothing of an `environ` read a moment
    /// later, when it may be in its exec.
    #[test]
    fn a_process_that_sleeps_then_execs_is_found_marked() {
        let _alone = alone();
        let script = r#"sleep 0.001; exec sh -c "$0" "$0""#;
        let mut execing = std::process::Command::new("sh");
        execing.args(["-c", script, script]);
        let missed = missed_looks(execing, 100_000);
        assert_eq!(missed, 0, "not found marked in {missed} of 100000 looks");
    }

    /// A 32-bit process (its auxiliary vector in 4-byte words) that runs all the time is read
    /// whole, not looked at again for ~50 ms at every scan and then given up on. Skipped where the kernel
    /// runs no 32-bit program.
    #[test]
    fn a_running_32_bit_process_is_read_whole() {
        let _alone = alone();
        // The smallest i386 ELF program: one segment, `jmp .`.
        let base: u32 = 0x0804_8000;
        let mut elf = vec![0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for h in [2u16, 3] {
            elf.extend(h.to_le_bytes());
        }
        for w in [1u32, base + 84, 52, 0, 0] {
            elf.extend(w.to_le_bytes());
        }
        for h in [52u16, 32, 1, 0, 0, 0] {
            elf.extend(h.to_le_bytes());
        }
        for w in [1u32, 0, base, base, 86, 86, 5, 0x1000] {
            elf.extend(w.to_le_bytes());
        }
        elf.extend([0xeb, 0xfe]);
        let path = std::env::temp_dir().join(format!("baton-spin32-{}", std::process::id()));
        std::fs::write(&path, &elf).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // ETXTBSY while another test's fork still holds the file open for writing.
        let mut spawned = None;
        for _ in 0..100 {
            match std::process::Command::new(&path)
                .env_clear()
                .env("A", "1")
                .spawn()
            {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => {
                    spawned = Some(other);
                    break;
                }
            }
        }
        let _ = std::fs::remove_file(&path);
        let Some(Ok(mut spin)) = spawned else {
            eprintln!("no 32-bit program runs here: {spawned:?}");
            return;
        };
        std::thread::sleep(Duration::from_millis(50));
        // Read whole: not looked at again until the reading gives up (None).
        let env = environ(spin.id() as i32, |_| false);
        let _ = spin.kill();
        let _ = spin.wait();
        assert_eq!(env, Some(b"A=1\0".to_vec()));
    }

    /// `stop_tree` returns with the tree reaped, also when its process had died already and
    /// was a zombie (unmarked): left, it went to whoever reaps after the supervisor (an init
    /// that may not).
    #[test]
    fn a_stopped_tree_is_reaped_not_left_a_zombie() {
        let _alone = alone();
        let mark = format!("test/process/stop/{}", std::process::id());
        let child = std::process::Command::new("sleep")
            .arg("60")
            .env(MARK_ENV, &mark)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        std::mem::forget(child); // reaped by stop_tree, as the supervisor's children are
        let deadline = Instant::now() + Duration::from_secs(5);
        while marked(&mark).is_empty() {
            assert!(Instant::now() < deadline, "the child never showed its mark");
            std::thread::sleep(Duration::from_millis(1));
        }
        // It dies of itself, and is a zombie when the tree is stopped.
        // SAFETY: kill with our child's pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        while lives(pid) {
            std::thread::sleep(Duration::from_millis(1));
        }
        stop_tree(&mark, Duration::from_secs(5));
        let r = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        assert_eq!(
            r,
            Err(nix::errno::Errno::ECHILD),
            "pid {pid} was left a zombie"
        );
    }

    /// A method's end is its caller's even when another thread reaps all along (the
    /// supervisor's loop while a probe runs in its thread): each of 200 quick methods reports
    /// its exit status, never a timeout or another's.
    #[test]
    fn a_methods_end_is_kept_for_it_while_another_thread_reaps() {
        let _alone = alone();
        let others = while_another_thread_reaps(|| {
            for n in 0..200 {
                let argv = ["sh".to_string(), "-c".into(), format!("exit {}", n % 100)];
                let (ended, _) = run_method(&argv, &[], None, Duration::from_secs(10));
                assert_eq!(ended, Some(Ended::Exited(n % 100)), "method {n}");
            }
        });
        assert!(
            others.is_empty(),
            "the reaper was handed methods' ends: {others:?}"
        );
    }

    /// A method past its time is a timeout (None) whichever reaps its leader, and its pid
    /// leaves the registry: no end is handed to the reaper.
    #[test]
    fn a_method_past_its_time_is_a_timeout_while_another_thread_reaps() {
        let _alone = alone();
        let others = while_another_thread_reaps(|| {
            for _ in 0..5 {
                let argv = ["sh".to_string(), "-c".into(), "sleep 5".into()];
                let t = Instant::now();
                let (ended, _) = run_method(&argv, &[], None, Duration::from_millis(100));
                assert_eq!(ended, None);
                assert!(t.elapsed() < Duration::from_secs(2));
            }
        });
        assert!(others.is_empty(), "{others:?}");
        assert!(methods().is_empty(), "{:?}", *methods());
    }
}
