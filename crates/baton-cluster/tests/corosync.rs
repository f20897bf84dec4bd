//! The corosync backend against a real corosync, run by each test in private network and
//! mount namespaces (so nothing outside is touched): loopback up, a tmpfs on `/run` (corosync's
//! fixed paths), a state directory of its own. Members are threads (and forked processes) that
//! enter that network namespace: libcpg talks to corosync over abstract Unix sockets, which
//! belong to a network namespace. Needs root (namespaces) and corosync (`scripts/test-deps.sh`).

use baton_cluster::{Backend, ClusterError, Delivery, Member, ProcessGroup, Reason};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One test at a time: members are forked processes, and a fork while another test's thread
/// holds a lock (the loader's, libqb's, a lazy initialisation) would leave the child stuck on
/// it. (The members that once failed to join under load were told "try again" by a corosync
/// still starting; the library retries that now.)
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> bool {
    let is_root = nix::unistd::geteuid().is_root();
    if !is_root {
        eprintln!("not root: cannot make network namespaces; corosync test not run");
    }
    is_root
}

/// A corosync node in namespaces of its own; killed (SIGTERM, then SIGKILL) when dropped.
struct Node {
    corosync: Child,
    netns: File,
    dir: PathBuf,
}

impl Node {
    /// One node alone, on loopback.
    fn start(tag: &str) -> Node {
        Node::start_in(tag, 1, &[(1, "127.0.0.1")], "", "")
    }

    /// Node `id` of a cluster whose nodes are `nodes` (`(id, address)`); `wait`
    /// is a shell command run in the namespace before anything else, `setup` one run after
    /// loopback is up and before corosync starts.
    fn start_in(tag: &str, id: u32, nodes: &[(u32, &str)], wait: &str, setup: &str) -> Node {
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
    fn pair(tag: &str) -> (Node, Node) {
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
    fn enter(&self) {
        nix::sched::setns(&self.netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    }

    /// Joins `group` from the calling thread (in the node's namespace), waiting for corosync
    /// to be up.
    fn join(&self, group: &str) -> ProcessGroup {
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
fn until(g: &mut ProcessGroup, mut pred: impl FnMut(&Delivery) -> bool) -> Vec<Delivery> {
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

fn is_message(d: &Delivery, text: &[u8]) -> bool {
    matches!(d, Delivery::Message { payload, .. } if payload == text)
}

fn is_change(d: &Delivery, who: Member, why: Reason) -> bool {
    matches!(d, Delivery::Membership { member, reason, .. } if *member == who && *reason == why)
}

/// Runs `body` in a forked child (in the calling thread's network namespace) and returns its
/// pid; the child exits 0 if `body` returns true, 1 otherwise, and never returns into the
/// harness. (A member is a process: corosync knows members by node and pid.)
fn member_process(body: impl FnOnce() -> bool) -> nix::unistd::Pid {
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
fn reap(pid: nix::unistd::Pid, limit: Duration) -> Option<i32> {
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

/// Three member processes send at once; each receives every message, its own included, in
/// the order its sender sent them, and all three see the same sequence.
#[test]
fn three_members_see_every_message_in_one_order_their_own_included() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("order");
    node.enter();
    const EACH: usize = 200;
    let out = node.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let children: Vec<_> = (0..3u8)
        .map(|i| {
            let file = out.join(format!("member-{i}"));
            member_process(move || {
                let why = file.with_extension("err");
                let fail = |what: String| {
                    let _ = std::fs::write(&why, what);
                    false
                };
                let mut g = match join_when_up("order") {
                    Ok(g) => g,
                    Err(e) => return fail(format!("join: {e}")),
                };
                // Everyone joined before anyone sends.
                let mut early = Vec::new();
                loop {
                    match g.recv(Some(Duration::from_secs(20))) {
                        Ok(Some(d)) => {
                            let all = matches!(&d,
                                Delivery::Membership { members, .. } if members.len() == 3);
                            early.push(d);
                            if all {
                                break;
                            }
                        }
                        other => {
                            return fail(format!(
                                "waiting for 3 members: {other:?} after {early:?}; members {:?}",
                                g.members()
                            ))
                        }
                    }
                }
                let mut got = Vec::new();
                for n in 0..EACH {
                    if let Err(e) =
                        g.send_timeout(format!("{i}:{n}").as_bytes(), Duration::from_secs(10))
                    {
                        return fail(format!("send {n}: {e}"));
                    }
                    // Receive along the way, so that flow control never blocks everyone.
                    loop {
                        match g.recv(Some(Duration::ZERO)) {
                            Ok(Some(d)) => got.push(d),
                            Ok(None) => break,
                            Err(e) => return fail(format!("recv: {e}")),
                        }
                    }
                }
                let count = |got: &Vec<Delivery>| {
                    got.iter()
                        .filter(|d| matches!(d, Delivery::Message { .. }))
                        .count()
                };
                while count(&got) < 3 * EACH {
                    match g.recv(Some(Duration::from_secs(20))) {
                        Ok(Some(d)) => got.push(d),
                        other => return fail(format!("after {} messages: {other:?}", count(&got))),
                    }
                }
                let Ok(me) = g.me() else {
                    return fail("me".into());
                };
                let lines: Vec<String> = got
                    .iter()
                    .filter_map(|d| match d {
                        Delivery::Message { from, payload } => Some(format!(
                            "{}{} {}",
                            if *from == me { "*" } else { "" },
                            from,
                            String::from_utf8_lossy(payload)
                        )),
                        _ => None,
                    })
                    .collect();
                std::fs::write(&file, lines.join("\n")).is_ok()
            })
        })
        .collect();
    let statuses: Vec<_> = children
        .into_iter()
        .map(|c| reap(c, Duration::from_secs(60)))
        .collect();
    for (i, status) in statuses.iter().enumerate() {
        assert_eq!(
            *status,
            Some(0),
            "member {i} failed: {:?}; the others: {:?}",
            std::fs::read_to_string(out.join(format!("member-{i}.err"))),
            (0..3)
                .map(|j| std::fs::read_to_string(out.join(format!("member-{j}.err"))))
                .collect::<Vec<_>>()
        );
    }
    let read = |i: u8| std::fs::read_to_string(out.join(format!("member-{i}"))).unwrap();
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.trim_start_matches('*').to_string())
            .collect()
    };
    let first = strip(&read(0));
    assert_eq!(first.len(), 3 * EACH);
    for i in 0..3u8 {
        let text = read(i);
        assert_eq!(strip(&text), first, "member {i} saw another order");
        let own: Vec<&str> = text.lines().filter(|l| l.starts_with('*')).collect();
        assert_eq!(own.len(), EACH, "member {i} received its own messages");
        assert!(
            own.iter()
                .all(|l| l.split_once(' ').unwrap().1.starts_with(&format!("{i}:"))),
            "member {i}'s own messages are the ones it sent"
        );
    }
    // Each sender's messages in the order it sent them.
    for i in 0..3u8 {
        let mine: Vec<usize> = first
            .iter()
            .filter_map(|l| {
                let text = l.split_once(' ').unwrap().1;
                let (who, n) = text.split_once(':').unwrap();
                (who == i.to_string()).then(|| n.parse().unwrap())
            })
            .collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>());
    }
}

/// Joins `group` from the calling process, retrying while corosync starts.
fn join_when_up(group: &str) -> Result<ProcessGroup, ClusterError> {
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

/// A member sees its own join first and nothing sent before it; the others see the join, a
/// leave and a process's death (SIGKILL) in one order with the messages around them.
#[test]
fn joins_leaves_and_deaths_are_told_in_order_with_the_messages() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("members");
    let mut a = node.join("members");
    let me_a = a.me().unwrap();
    until(&mut a, |d| is_change(d, me_a, Reason::Join));
    a.send(b"before b").unwrap();
    until(&mut a, |d| is_message(d, b"before b"));

    // b: its first delivery is its own join; it never sees "before b"; it leaves when told.
    let (go_read, go_write) = nix::unistd::pipe().unwrap();
    let b = member_process(move || {
        let Ok(mut b) = join_when_up("members") else {
            return false;
        };
        let Ok(me) = b.me() else { return false };
        let Ok(Some(first)) = b.recv(Some(Duration::from_secs(20))) else {
            return false;
        };
        let after = until(&mut b, |d| is_message(d, b"after b"));
        let mut go = [0u8; 1];
        let _ = nix::unistd::read(go_read.as_raw_fd(), &mut go);
        is_change(&first, me, Reason::Join)
            && !after.iter().any(|d| is_message(d, b"before b"))
            && b.leave().is_ok()
    });
    let seen = until(
        &mut a,
        |d| matches!(d, Delivery::Membership { reason: Reason::Join, member, .. } if *member != me_a),
    );
    let Some(Delivery::Membership {
        member: me_b,
        members,
        ..
    }) = seen.last()
    else {
        unreachable!()
    };
    let me_b = *me_b;
    assert_eq!(me_b.pid, b.as_raw() as u32);
    assert_eq!(members.len(), 2);
    a.send(b"after b").unwrap();
    until(&mut a, |d| is_message(d, b"after b"));
    nix::unistd::write(&go_write, b"g").unwrap();
    assert_eq!(
        reap(b, Duration::from_secs(30)),
        Some(0),
        "b saw something wrong"
    );
    let seen = until(&mut a, |d| is_change(d, me_b, Reason::Leave));
    assert_eq!(seen.len(), 1, "{seen:?}");

    // c sends, then is killed: its message, then its PROCDOWN, in that order.
    let (said_read, said_write) = nix::unistd::pipe().unwrap();
    let c = member_process(move || {
        let Ok(mut c) = join_when_up("members") else {
            return false;
        };
        if c.send(b"last words").is_err() {
            return false;
        }
        let _ = nix::unistd::write(&said_write, b"y");
        loop {
            std::thread::sleep(Duration::from_secs(1)); // killed here
        }
    });
    let mut said = [0u8; 1];
    nix::unistd::read(said_read.as_raw_fd(), &mut said).unwrap();
    let seen = until(&mut a, |d| is_message(d, b"last words"));
    let Some(Delivery::Message { from: me_c, .. }) = seen.last() else {
        unreachable!()
    };
    let me_c = *me_c;
    assert_eq!(me_c.pid, c.as_raw() as u32);
    nix::sys::signal::kill(c, nix::sys::signal::Signal::SIGKILL).unwrap();
    nix::sys::wait::waitpid(c, None).unwrap();
    let seen = until(&mut a, |d| is_change(d, me_c, Reason::ProcessDown));
    assert!(
        seen.iter().all(|d| !matches!(d, Delivery::Message { .. })),
        "{seen:?}"
    );
    assert_eq!(a.members().unwrap(), vec![me_a]);
}

/// Names, sizes, and a corosync that is not there: clear errors.
#[test]
fn bad_names_big_messages_and_no_corosync_are_clear_errors() {
    let _serial = serial();
    if !root() {
        return;
    }
    assert!(matches!(
        ProcessGroup::join(Backend::Corosync, ""),
        Err(ClusterError::EmptyName)
    ));
    let long = "x".repeat(129);
    assert!(matches!(
        ProcessGroup::join(Backend::Corosync, &long),
        Err(ClusterError::NameTooLong { max: 128 })
    ));
    // A thread in a network namespace with no corosync in it.
    let lonely = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        ProcessGroup::join(Backend::Corosync, "nobody").map(|_| ())
    })
    .join()
    .unwrap();
    match lonely {
        Err(ClusterError::Corosync(why)) => assert!(why.contains("corosync"), "{why}"),
        other => panic!("{other:?}"),
    }
    let node = Node::start("errors");
    let mut g = node.join("errors");
    match ProcessGroup::join(Backend::Corosync, "errors") {
        Err(ClusterError::Corosync(why)) => assert!(why.contains("already"), "{why}"),
        other => panic!("a second membership of one process: {other:?}"),
    }
    assert!(matches!(
        g.send(&vec![0u8; ProcessGroup::MAX_MESSAGE + 1]),
        Err(ClusterError::TooBig { .. })
    ));
    let big = vec![7u8; 256 * 1024]; // many totem packets, one libcpg message
    g.send_timeout(&big, Duration::from_secs(10)).unwrap();
    let seen = until(&mut g, |d| matches!(d, Delivery::Message { .. }));
    assert!(is_message(seen.last().unwrap(), &big));
}

/// Two nodes (two network namespaces joined by a veth pair): a member on each sends at once
/// and both see one order; then node 2's corosync is killed and node 1's member is told
/// NODEDOWN for the member there.
#[test]
fn two_nodes_agree_on_one_order_and_a_dead_node_is_told_nodedown() {
    let _serial = serial();
    if !root() {
        return;
    }
    let (one, two) = Node::pair("pair");
    let mut a = one.join("pair");
    let me_a = a.me().unwrap();
    assert_eq!(me_a.node, 1);
    two.enter();
    const EACH: usize = 100;
    let out = two.dir.join("b-saw");
    let b = member_process({
        let out = out.clone();
        move || {
            let mut b = match join_when_up("pair") {
                Ok(b) => b,
                Err(e) => {
                    let _ = std::fs::write(out.with_extension("err"), e.to_string());
                    return false;
                }
            };
            until(
                &mut b,
                |d| matches!(d, Delivery::Membership { members, .. } if members.len() == 2),
            );
            let mut got = Vec::new();
            for n in 0..EACH {
                if b.send_timeout(format!("b:{n}").as_bytes(), Duration::from_secs(10))
                    .is_err()
                {
                    return false;
                }
                loop {
                    match b.recv(Some(Duration::ZERO)) {
                        Ok(Some(d)) => got.push(d),
                        Ok(None) => break,
                        Err(_) => return false,
                    }
                }
            }
            while got
                .iter()
                .filter(|d| matches!(d, Delivery::Message { .. }))
                .count()
                < 2 * EACH
            {
                match b.recv(Some(Duration::from_secs(20))) {
                    Ok(Some(d)) => got.push(d),
                    _ => return false,
                }
            }
            let lines: Vec<String> = got
                .iter()
                .filter_map(|d| match d {
                    Delivery::Message { from, payload } => {
                        Some(format!("{from} {}", String::from_utf8_lossy(payload)))
                    }
                    _ => None,
                })
                .collect();
            // Whole or not at all: the parent reads it once it exists.
            let part = out.with_extension("part");
            if std::fs::write(&part, lines.join("\n")).is_err()
                || std::fs::rename(&part, &out).is_err()
            {
                return false;
            }
            loop {
                std::thread::sleep(Duration::from_secs(1)); // goes with its node
            }
        }
    });
    let err = out.with_extension("err");
    let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // A Join, or a NodeUp if b joined on node 2 before the two corosyncs met.
        until(&mut a, |d| {
            matches!(d, Delivery::Membership { member, reason: Reason::Join | Reason::NodeUp, .. }
                if member.node == 2)
        })
    }))
    .unwrap_or_else(|_| panic!("b: {:?}", std::fs::read_to_string(&err)));
    let Some(Delivery::Membership { member: me_b, .. }) = seen.last() else {
        unreachable!()
    };
    let me_b = *me_b;
    assert_eq!(
        me_b.pid,
        b.as_raw() as u32,
        "pids are the node's own: one pid namespace here"
    );
    let mut got = Vec::new();
    for n in 0..EACH {
        a.send_timeout(format!("a:{n}").as_bytes(), Duration::from_secs(10))
            .unwrap();
        while let Some(d) = a.recv(Some(Duration::ZERO)).unwrap() {
            got.push(d);
        }
    }
    let messages = |got: &Vec<Delivery>| -> Vec<String> {
        got.iter()
            .filter_map(|d| match d {
                Delivery::Message { from, payload } => {
                    Some(format!("{from} {}", String::from_utf8_lossy(payload)))
                }
                _ => None,
            })
            .collect()
    };
    while messages(&got).len() < 2 * EACH {
        got.push(
            a.recv(Some(Duration::from_secs(20)))
                .unwrap()
                .expect("all came"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !out.exists() {
        assert!(Instant::now() < deadline, "b never wrote what it saw");
        std::thread::sleep(Duration::from_millis(20));
    }
    let b_saw: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(messages(&got), b_saw, "the two nodes saw different orders");

    // Node 2 dies: its corosync is killed; node 1's member is told NODEDOWN for b.
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(two.corosync.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let seen = until(&mut a, |d| is_change(d, me_b, Reason::NodeDown));
    assert!(seen.iter().all(|d| !matches!(d, Delivery::Message { .. })));
    eprintln!("NODEDOWN told {:?} after the kill", killed.elapsed());
    assert_eq!(a.members().unwrap(), vec![me_a]);
    let _ = nix::sys::signal::kill(b, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(b, None);
}

// ---- review 17 ----

/// Corosync stops while a member waits in `recv(None)`: the wait ends with an error (it must
/// neither hang nor spin).
#[test]
fn recv_errors_when_corosync_stops() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("stop");
    let mut g = node.join("stop");
    let me = g.me().unwrap();
    until(&mut g, |d| is_change(d, me, Reason::Join));
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let r = g.recv(None);
        let _ = tx.send(format!("{r:?}"));
        g
    });
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.corosync.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(r) => {
            assert!(
                r.starts_with("Err(Corosync"),
                "recv after corosync died: {r}"
            );
            drop(waiter.join().unwrap());
        }
        Err(_) => panic!("recv(None) still waiting 10 s after corosync was killed"),
    }
}

/// A message of exactly `MAX_MESSAGE` bytes (over libcpg's atomic size, so really
/// fragmented) is accepted and delivered whole.
#[test]
fn a_message_of_exactly_max_message_is_delivered() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("max");
    let mut g = node.join("max");
    let big: Vec<u8> = (0..ProcessGroup::MAX_MESSAGE)
        .map(|i| (i % 251) as u8)
        .collect();
    g.send_timeout(&big, Duration::from_secs(10)).unwrap();
    let seen = until(&mut g, |d| matches!(d, Delivery::Message { .. }));
    assert!(is_message(seen.last().unwrap(), &big));
}

/// A name of exactly 128 bytes joins, and the member gets its own join and its message.
#[test]
fn a_name_of_128_bytes_joins() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("name128");
    let name = "n".repeat(128);
    let mut g = node.join(&name);
    let me = g.me().unwrap();
    until(&mut g, |d| is_change(d, me, Reason::Join));
    g.send(b"hi").unwrap();
    until(&mut g, |d| is_message(d, b"hi"));
    assert_eq!(g.members().unwrap(), vec![me]);
}

/// `fd()` is "readable when `recv` may have something": with three messages waiting, a
/// poll, one `recv(ZERO)`, and a poll again must find the fd readable (two are still there).
#[test]
fn fd_is_readable_while_deliveries_are_queued() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("fd");
    let mut g = node.join("fd");
    let me = g.me().unwrap();
    until(&mut g, |d| is_change(d, me, Reason::Join));
    for m in [&b"one"[..], b"two", b"three"] {
        g.send(m).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500)); // all three at this member's corosync
    let readable = |g: &ProcessGroup| {
        let mut pfd = libc::pollfd {
            fd: g.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 2000) == 1 }
    };
    let mut got = Vec::new();
    while got.len() < 3 {
        assert!(
            readable(&g),
            "fd not readable; got {got:?}; inbox still had: {:?}",
            {
                let mut rest = Vec::new();
                while let Ok(Some(d)) = g.recv(Some(Duration::ZERO)) {
                    rest.push(d);
                }
                rest
            }
        );
        if let Some(d) = g.recv(Some(Duration::ZERO)).unwrap() {
            got.push(d);
        }
    }
}

/// A forked child that drops its copy of the parent's handle (a child returning from the
/// scope that held it) must not take the parent out of the group.
#[test]
fn a_forked_child_dropping_the_handle_leaves_the_parent_a_member() {
    let _serial = serial();
    if !root() {
        return;
    }
    let node = Node::start("fork");
    let mut a = node.join("fork");
    let me = a.me().unwrap();
    until(&mut a, |d| is_change(d, me, Reason::Join));
    let a_ref = &a;
    let child = member_process(move || {
        // The child's own copy of the parent's handle goes out of scope.
        // SAFETY: the child owns its copy of the parent's memory; the parent never sees it.
        drop(unsafe { std::ptr::read(a_ref) });
        true
    });
    assert_eq!(reap(child, Duration::from_secs(20)), Some(0));
    a.send(b"still here").unwrap();
    let seen = until(&mut a, |d| is_message(d, b"still here"));
    assert!(
        seen.iter()
            .all(|d| !matches!(d, Delivery::Membership { .. })),
        "{seen:?}"
    );
    assert_eq!(a.members().unwrap(), vec![me]);
}
