//! Helpers shared by the integration tests of `baton` and of `baton-cli` (which includes this
//! file): a unique domain per test that removes its segments when dropped, and child processes
//! that are killed (by pid) if a test fails before reaping them.
#![allow(dead_code)]

use baton::Domain;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A domain no other test (or test run) uses; removes every segment in it on drop.
pub struct TestDomain {
    pub domain: Domain,
}

impl TestDomain {
    pub fn new(tag: &str) -> TestDomain {
        let nanos = baton::monotonic_ns();
        let name = format!("t-{tag}-{}-{nanos}", std::process::id());
        TestDomain {
            domain: Domain::new(&name).expect("valid test domain"),
        }
    }

    pub fn name(&self) -> &str {
        self.domain.as_str()
    }

    /// The file backing queue `name`.
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        std::path::Path::new(baton::SHM_DIR).join(format!("baton.{}~{name}", self.name()))
    }

    /// Files of this domain left in /dev/shm.
    pub fn leftovers(&self) -> Vec<String> {
        let prefix = format!("baton.{}~", self.name());
        std::fs::read_dir(baton::SHM_DIR)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }
}

impl Drop for TestDomain {
    fn drop(&mut self) {
        for n in self.leftovers() {
            let _ = std::fs::remove_file(std::path::Path::new(baton::SHM_DIR).join(n));
        }
    }
}

/// A child process that is killed by pid and reaped when dropped.
pub struct Child(pub std::process::Child);

impl Child {
    pub fn spawn(cmd: &mut Command) -> Child {
        Child(cmd.spawn().expect("spawn child"))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits for the child to exit, at most `limit`; kills it if it does not. Its piped output
    /// is read while it runs (a `baton recv` into a pipe waits for its reader).
    pub fn wait_output(mut self, limit: Duration) -> std::process::Output {
        use std::io::Read;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = drain(
            self.0
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let err = drain(
            self.0
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + limit;
        while self.0.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.0.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut child = unsafe_take(&mut self);
        let status = child.wait().unwrap();
        std::process::Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }
}

fn unsafe_take(c: &mut Child) -> std::process::Child {
    // Replace the child with a finished dummy so Drop has nothing to kill.
    let dummy = Command::new("true").spawn().expect("spawn true");
    std::mem::replace(&mut c.0, dummy)
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `cond` every millisecond until it holds or `limit` passes; returns whether it held.
/// Used to wait for another process to reach a state, never to assert on timing.
/// Whether thread `tid` (a process's first thread: its pid) sleeps now (state S in /proc).
pub fn sleeps(tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/task/{tid}/stat")).is_ok_and(|stat| {
        // The name, in parentheses, may hold anything: the state follows the last ')'.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
    })
}

pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What `baton recv --json` printed, as (payload, redelivered) pairs.
pub fn received(o: &std::process::Output) -> Vec<(String, bool)> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["payload"].as_str().unwrap().to_string(),
                v["redelivered"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// A process that holds the read end of a pipe and never reads it, and the write end to give
/// a writer as its standard output (what it writes stays in the pipe).
pub fn reader_that_never_reads() -> (Child, std::process::ChildStdin) {
    let mut reader = Child::spawn(Command::new("sleep").arg("30").stdin(Stdio::piped()));
    let pipe = reader.0.stdin.take().expect("piped stdin");
    (reader, pipe)
}

/// Waits for the forked child `child` to exit, at most `limit` (then kills it, by pid, and
/// reaps it); its exit code, or `None` if it did not exit by itself.
pub fn reap(child: nix::unistd::Pid, limit: Duration) -> Option<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut code = None;
    let exited = eventually(limit, || match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, c)) => {
            code = Some(c);
            true
        }
        Ok(WaitStatus::StillAlive) => false,
        _ => true,
    });
    if !exited {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(child, None);
    }
    code
}

/// Runs `body` in a forked child that writes lines to a pipe; returns its pid and the pipe's
/// reading end. The child exits 0 when `body` returns, 1 if it panics, and never returns into
/// the test harness.
pub fn fork_writing(
    body: impl FnOnce(&mut dyn std::io::Write),
) -> (nix::unistd::Pid, std::io::BufReader<std::fs::File>) {
    use std::io::Write;
    let (r, w) = nix::unistd::pipe().unwrap();
    let (r, mut w) = (std::fs::File::from(r), std::fs::File::from(w));
    // SAFETY: the child runs `body` and exits without returning into the test harness.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut w)));
            let _ = w.flush();
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(if ok.is_ok() { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            (child, std::io::BufReader::new(r))
        }
    }
}

/// The next line from a child's pipe, without its newline ("" at its end).
pub fn read_line(r: &mut std::io::BufReader<std::fs::File>) -> String {
    use std::io::BufRead;
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s.trim_end().to_string()
}
