//! Takeover latency: from SIGKILL of a queue's owner to a standby process having received the
//! next waiting message, next to the bare robust-mutex floor measured in the same run: SIGKILL
//! of a process holding a robust process-shared mutex to a waiter process returning from
//! `pthread_mutex_lock` with `EOWNERDEAD`. Trials of the two kinds alternate, so machine noise
//! falls on both alike.
//!
//! `cargo bench --bench takeover` (200 trials each; `-- --trials N` for more or fewer)
//!
//! Every process here is a real one: the bench binary re-runs itself in a role named by the
//! `BATON_BENCH_ROLE` environment variable. Times are `CLOCK_MONOTONIC`, read in the parent just
//! before `kill(2)` and in the child just after it has the message (or the lock).

use baton::{monotonic_ns, Attributes, Domain, Queue};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

#[path = "common/latency.rs"]
mod latency;

const ROLE: &str = "BATON_BENCH_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let arg = std::env::args().nth(1).unwrap_or_default();
        child(&role, &arg);
        return;
    }
    let trials = std::env::args()
        .skip_while(|a| a != "--trials")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200usize);
    if let Err(e) = run(trials) {
        eprintln!("takeover bench failed: {e}");
        std::process::exit(1);
    }
}

fn run(trials: usize) -> Result<(), Box<dyn std::error::Error>> {
    let domain = Domain::new(&format!("bench-takeover-{}", std::process::id()))?;
    let queue = Queue::create(&domain, "q", &Attributes::default())?;
    let floor_path = PathBuf::from(format!(
        "{}/baton-bench-floor-{}",
        baton::SHM_DIR,
        std::process::id()
    ));
    let result = (|| -> Result<(Vec<u64>, Vec<u64>), Box<dyn std::error::Error>> {
        let (mut floor, mut baton) = (Vec::new(), Vec::new());
        for i in 0..trials {
            floor.push(floor_trial(&floor_path)?);
            baton.push(baton_trial(&domain, &queue)?);
            if (i + 1) % 50 == 0 {
                eprintln!("{} of {trials} trials", i + 1);
            }
        }
        Ok((floor, baton))
    })();
    let _ = std::fs::remove_file(&floor_path);
    drop(queue);
    Queue::remove(&domain, "q")?;
    let (mut floor, mut baton) = result?;
    println!("takeover latency, {trials} trials each, kill(2) to having the next message");
    latency::print_table(
        "µs",
        1e3,
        1,
        &mut [
            ("robust mutex floor (EOWNERDEAD)", &mut floor),
            ("baton standby, message received", &mut baton),
        ],
    );
    latency::print_ratio("baton / floor", &baton, &floor);
    Ok(())
}

/// Spawns this binary in `role` with `arg`; its standard output is piped.
fn spawn(role: &str, arg: &str) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .arg(arg)
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .spawn()
}

fn read_line(out: &mut BufReader<ChildStdout>) -> Result<String, Box<dyn std::error::Error>> {
    let mut line = String::new();
    if out.read_line(&mut line)? == 0 {
        return Err("a child ended without answering".into());
    }
    Ok(line.trim().to_string())
}

/// Kills `victim` at t0; returns when `waiter` reports t1 on its standard output.
fn kill_and_time(mut victim: Child, mut waiter: Child) -> Result<u64, Box<dyn std::error::Error>> {
    let mut out = BufReader::new(waiter.stdout.take().ok_or("no stdout")?);
    let t0 = monotonic_ns();
    victim.kill()?; // SIGKILL, by pid
    let t1: u64 = read_line(&mut out)?.parse()?;
    victim.wait()?;
    waiter.wait()?;
    Ok(t1.saturating_sub(t0))
}

/// Waits until `cond` holds, then a little more so that a waiter is asleep in the kernel.
fn settle(mut cond: impl FnMut() -> bool) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        if std::time::Instant::now() > deadline {
            return Err("a child did not get ready".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    std::thread::sleep(Duration::from_millis(3));
    Ok(())
}

fn baton_trial(domain: &Domain, queue: &Queue) -> Result<u64, Box<dyn std::error::Error>> {
    let mut owner = spawn("owner", domain.as_str())?;
    let mut ready = BufReader::new(owner.stdout.take().ok_or("no stdout")?);
    read_line(&mut ready)?;
    let standby = spawn("standby", domain.as_str())?;
    settle(|| queue.status().standbys == 1)?;
    queue.sender().send(b"next")?;
    kill_and_time(owner, standby)
}

fn floor_trial(path: &Path) -> Result<u64, Box<dyn std::error::Error>> {
    let arg = path.to_str().ok_or("path")?;
    {
        let f = std::fs::File::create(path)?;
        f.set_len(4096)?;
    }
    let mut holder = spawn("floor-hold", arg)?;
    holder.stdin.take();
    let mut ready = BufReader::new(holder.stdout.take().ok_or("no stdout")?);
    // The holder initialises the mutex and locks it before it answers.
    read_line(&mut ready)?;
    let waiter = spawn("floor-wait", arg)?;
    let map = FloorMap::open(path)?;
    settle(|| map.waiting() == 1)?;
    kill_and_time(holder, waiter)
}

/// The floor's shared page: a robust mutex and a flag saying the waiter is about to block.
struct FloorMap {
    map: memmap2::MmapRaw,
}

impl FloorMap {
    fn open(path: &Path) -> std::io::Result<FloorMap> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(FloorMap {
            map: memmap2::MmapOptions::new().len(4096).map_raw(&f)?,
        })
    }
    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.map.as_mut_ptr() as *mut libc::pthread_mutex_t
    }
    fn flag(&self) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: offset 512 is inside the 4096-byte mapping, 4-aligned; an atomic is valid for
        // any bits, and the mapping outlives the reference.
        unsafe { &*(self.map.as_ptr().add(512) as *const std::sync::atomic::AtomicU32) }
    }
    fn waiting(&self) -> u32 {
        self.flag().load(std::sync::atomic::Ordering::Acquire)
    }
}

fn child(role: &str, arg: &str) {
    let say = |s: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    match role {
        "owner" => {
            let q = Queue::open(&Domain::new(arg).unwrap(), "q").unwrap();
            let _rx = q.receiver().unwrap();
            say("owner");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "standby" => {
            let q = Queue::open(&Domain::new(arg).unwrap(), "q").unwrap();
            let mut rx = q.standby(None).unwrap();
            let m = rx.recv().unwrap();
            let t1 = monotonic_ns();
            assert!(rx.took_over() && m.payload() == b"next");
            say(&t1.to_string());
        }
        "floor-hold" => {
            let map = FloorMap::open(Path::new(arg)).unwrap();
            // SAFETY: the page is private to this trial; the attribute lives on our stack.
            unsafe {
                let mut attr = std::mem::zeroed::<libc::pthread_mutexattr_t>();
                libc::pthread_mutexattr_init(&mut attr);
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
                libc::pthread_mutex_init(map.mutex(), &attr);
                assert_eq!(libc::pthread_mutex_lock(map.mutex()), 0);
            }
            say("holding");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "floor-wait" => {
            let map = FloorMap::open(Path::new(arg)).unwrap();
            map.flag().store(1, std::sync::atomic::Ordering::Release);
            // SAFETY: the holder initialised the mutex before the parent started us.
            let rc = unsafe { libc::pthread_mutex_lock(map.mutex()) };
            let t1 = monotonic_ns();
            assert_eq!(rc, libc::EOWNERDEAD);
            // SAFETY: we hold the lock.
            unsafe {
                libc::pthread_mutex_consistent(map.mutex());
                libc::pthread_mutex_unlock(map.mutex());
            }
            say(&t1.to_string());
        }
        other => panic!("unknown role {other}"),
    }
}
