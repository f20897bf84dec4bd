//! Corosync for tests: a node (or two joined by a veth pair) in private network and mount
//! namespaces, member processes forked into them, and helpers to receive until something
//! comes. Shared by baton-cluster's tests and the CLI's (`#[path]`).
#![allow(dead_code)] // each test crate uses its part

use baton_cluster::{Backend, ClusterError, Delivery, Member, ProcessGroup, Reason};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One test at a time: members are forked processes, and a fork while another test's thread
/// holds a lock (the loader's, libqb's, a lazy initialisation) would leave the child stuck on
/// it. (The members that once failed to join under load were told "try again" by a corosync
/// still starting; the library retries that now.)
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn root() -> bool {
    let is_root = nix::unistd::geteuid().is_root();
    if !is_root {
        eprintln!("not root: cannot make network namespaces; corosync test not run");
    }
    is_root
}

/// A corosync node in namespaces of its own; killed (SIGTERM, then SIGKILL) when dropped.
pub struct Node {
    pub corosync: Child,
    pub netns: File,
    pub dir: PathBuf,
}

impl Node {
    /// One node alone, on loopback.
    pub fn start(tag: &str) -> Node {
        Node::start_in(tag, 1, &[(1, "127.0.0.1")], "", "")
    }

    /// Node `id` of a cluster whose nodes are `nodes` (`(id, address)`); `wait`
    /// is a shell command run in the namespace before anything else, `setup` one run after
    /// loopback is up and before corosync starts.
    pub fn start_in(tag: &str, id: u32, nodes: &[(u32, &str)], wait: &str, setup: &str) -> Node {
        assert!(
            Command::new("corosync").arg("-v").output().is_ok(),
            "corosync is not installed: run `bash scripts/test-deps.sh` as root"
        );
        let dir =
            std::env::temp_dir().join(format!("baton-corosync-{tag}-{id}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let conf = dir.join("corosync.conf");
        let nodelist: String = nodes
            .iter()
            .map(|(n, a)| {
                format!(" node {{\n  ring0_addr: {a}\n  nodeid: {n}\n  name: node{n}\n }}\n")
            })
            .collect();
        let two_node = if nodes.len() == 2 {
            " two_node: 1\n"
        } else {
            ""
        };
        std::fs::write(
            &conf,
            format!(
                "totem {{\n version: 2\n cluster_name: baton-{tag}\n transport: knet\n \
                 crypto_cipher: none\n crypto_hash: none\n token: 1000\n}}\n\
                 nodelist {{\n{nodelist}}}\n\
                 quorum {{\n provider: corosync_votequorum\n{two_node}}}\n\
                 logging {{\n to_stderr: yes\n to_syslog: no\n to_logfile: no\n}}\n\
                 system {{\n state_dir: {}\n}}\n",
                dir.join("state").display()
            ),
        )
        .unwrap();
        let log = File::create(dir.join("corosync.log")).unwrap();
        // Without --fork: unshare enters the namespaces itself and execs, so the child's pid
        // is corosync's, in them.
        let corosync = Command::new("unshare")
            .args(["--net", "--mount", "sh", "-c"])
            .arg(format!(
                "{wait} ip link set lo up && mount -t tmpfs tmpfs /run && mkdir -p /run/corosync \
                 && {setup} exec corosync -f -c {}",
                conf.display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        // The namespace is made before `sh` runs; wait until the pid's netns is not ours.
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let path = format!("/proc/{}/ns/net", corosync.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(&path).map(|l| l == ours).unwrap_or(true) {
            assert!(
                Instant::now() < deadline,
                "unshare never made the namespace"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let netns = File::open(&path).unwrap();
        Node {
            corosync,
            netns,
            dir,
        }
    }

    /// Two nodes, 1 and 2, in two network namespaces joined by a veth pair with link-local
    /// addresses.
    pub fn pair(tag: &str) -> (Node, Node) {
        let go =
            std::env::temp_dir().join(format!("baton-corosync-{tag}-go-{}", std::process::id()));
        let _ = std::fs::remove_file(&go);
        let wait = format!("while [ ! -e {} ]; do sleep 0.02; done;", go.display());
        let veth = |n: u32| format!("bt{}{}", std::process::id() % 100_000, n);
        let addr = |n: u32| format!("169.254.77.{n}");
        let nodes = [(1, "169.254.77.1"), (2, "169.254.77.2")];
        let start = |n: u32| {
            Node::start_in(
                tag,
                n,
                &nodes,
                &wait,
                &format!(
                    "ip addr add {}/24 dev {v} && ip link set {v} up &&",
                    addr(n),
                    v = veth(n)
                ),
            )
        };
        let (one, two) = (start(1), start(2));
        let ip = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().unwrap();
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ip(&[
            "link",
            "add",
            &veth(1),
            "type",
            "veth",
            "peer",
            "name",
            &veth(2),
        ]);
        ip(&[
            "link",
            "set",
            &veth(1),
            "netns",
            &one.corosync.id().to_string(),
        ]);
        ip(&[
            "link",
            "set",
            &veth(2),
            "netns",
            &two.corosync.id().to_string(),
        ]);
        std::fs::write(&go, b"").unwrap();
        // Both shells have seen it once each has exec'd corosync.
        let deadline = Instant::now() + Duration::from_secs(10);
        for n in [&one, &two] {
            let comm = format!("/proc/{}/comm", n.corosync.id());
            while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "corosync") {
                assert!(Instant::now() < deadline, "corosync did not start");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_file(&go);
        (one, two)
    }

    /// Puts the calling thread in the node's network namespace.
    pub fn enter(&self) {
        nix::sched::setns(&self.netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    }

    /// Joins `group` from the calling thread (in the node's namespace), waiting for corosync
    /// to be up.
    pub fn join(&self, group: &str) -> ProcessGroup {
        self.enter();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match ProcessGroup::join(Backend::Corosync, group) {
                Ok(g) => return g,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "join {group}: {e}; corosync said:\n{}",
                    std::fs::read_to_string(self.dir.join("corosync.log")).unwrap_or_default()
                ),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "corosync {} said:\n{}",
                self.dir.display(),
                std::fs::read_to_string(self.dir.join("corosync.log")).unwrap_or_default()
            );
        }
        let pid = nix::unistd::Pid::from_raw(self.corosync.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.corosync.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.corosync.kill();
        let _ = self.corosync.wait();
        // corosync's libqb leaves its ring buffers in /dev/shm if it is killed.
        let pid = self.corosync.id();
        if let Ok(entries) = std::fs::read_dir("/dev/shm") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("qb-") && name.contains(&format!("-{pid}-")) {
                    // A directory per client connection, or a file.
                    let _ = std::fs::remove_dir_all(e.path());
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Receives until `pred` holds of a delivery, returning every delivery up to it.
pub fn until(g: &mut ProcessGroup, mut pred: impl FnMut(&Delivery) -> bool) -> Vec<Delivery> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match g.recv(Some(left)).unwrap() {
            Some(d) => {
                let done = pred(&d);
                seen.push(d);
                if done {
                    return seen;
                }
            }
            None => panic!("nothing more came; saw {seen:#?}"),
        }
    }
}

pub fn is_message(d: &Delivery, text: &[u8]) -> bool {
    matches!(d, Delivery::Message { payload, .. } if payload == text)
}

pub fn is_change(d: &Delivery, who: Member, why: Reason) -> bool {
    matches!(d, Delivery::Membership { member, reason, .. } if *member == who && *reason == why)
}

/// Runs `body` in a forked child (in the calling thread's network namespace) and returns its
/// pid; the child exits 0 if `body` returns true, 1 otherwise, and never returns into the
/// harness. (A member is a process: corosync knows members by node and pid.)
pub fn member_process(body: impl FnOnce() -> bool) -> nix::unistd::Pid {
    // SAFETY: the child runs `body` and `_exit`s; it touches none of the parent's handles.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(false);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    }
}

/// Waits for `pid` to exit, at most `limit` (then kills it); its exit status.
pub fn reap(pid: nix::unistd::Pid, limit: Duration) -> Option<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = Instant::now() + limit;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::Exited(_, code) => return Some(code),
            WaitStatus::Signaled(..) => return None,
            _ if Instant::now() > deadline => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return None;
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Joins `group` from the calling process, retrying while corosync starts.
pub fn join_when_up(group: &str) -> Result<ProcessGroup, ClusterError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ProcessGroup::join(Backend::Corosync, group) {
            Err(ClusterError::Corosync(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => return other,
        }
    }
}
