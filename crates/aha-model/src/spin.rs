//! A small pool of helper threads that spin between jobs, for the many short parallel
//! kernels of a decoding step (a batch-1 step of a 135M model is ~200 of them, 20-40 µs
//! each). Handing such a kernel to a sleeping rayon worker costs a futex wake-up and a
//! context switch per kernel: ~20% of batch-1 decode time went to the scheduler, and the
//! late helper left most chunks to the calling thread. Here helpers spin for a while after
//! each job (then park), so the next kernel starts on every thread at once.
//!
//! [`run`] takes the pool when it is free and the caller's rayon pool has the size it was
//! built for; otherwise it returns `false` and the caller falls back to rayon. Tasks are
//! claimed from a shared counter, so which thread runs a task never changes its result.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks.
const SPIN: Duration = Duration::from_micros(100);

type Task<'a> = dyn Fn(usize) + Sync + 'a;

struct Shared {
    /// Odd while a job is open to helpers, even when closed.
    epoch: AtomicU64,
    /// The open job (valid while `epoch` is odd or `active` > 0).
    job: Mutex<Option<&'static Task<'static>>>,
    tasks: AtomicUsize,
    next: AtomicUsize,
    /// Helpers that joined the open job and have not left it.
    active: AtomicUsize,
    panicked: AtomicBool,
    parked: Mutex<usize>,
    wake: Condvar,
}

pub struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    /// Held by the one caller dispatching at a time.
    busy: Mutex<()>,
}

static POOL: OnceLock<Option<Pool>> = OnceLock::new();

/// Runs `f(0) .. f(n - 1)` on the calling thread and the pool's helpers, returning once all
/// are done; `false` (nothing run) when the pool is busy, absent, or sized for a different
/// thread count than the caller's rayon pool.
pub fn run(n: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
    if IN_TASK.get() {
        // A task of a job (an MoE expert per thread) runs its own kernels on its thread.
        (0..n).for_each(f);
        return true;
    }
    let threads = rayon::current_num_threads();
    if threads < 2 || disabled() {
        return false;
    }
    let pool = POOL.get_or_init(|| Pool::new(threads));
    match pool {
        Some(p) if p.threads == threads => p.dispatch(n, f),
        _ => false,
    }
}

/// `f(chunk index, chunk)` over `y` in chunks of `chunk` (the last may be shorter): on the
/// pool, else on rayon's threads, or in the calling thread when there is one thread or one
/// chunk (handing each kernel to a pool thread and waiting for it cost ~40% of
/// single-threaded decode in context switches).
pub fn for_chunks<F>(y: &mut [f32], chunk: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    use rayon::prelude::*;
    if rayon::current_num_threads() <= 1 || y.len() <= chunk {
        y.chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, out)| f(c, out));
        return;
    }
    let len = y.len();
    let base = Disjoint(y.as_mut_ptr());
    let task = |c: usize| {
        let start = c * chunk;
        // SAFETY: chunk c is [start, start + chunk) clipped to y, and each chunk index is
        // run once, so the slices are disjoint parts of `y`, alive for the whole call.
        let out = unsafe { std::slice::from_raw_parts_mut(base.at(start), chunk.min(len - start)) };
        f(c, out)
    };
    if !run(len.div_ceil(chunk), &task) {
        y.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, out)| f(c, out));
    }
}

/// `f` of each item, in order: on the pool, else on rayon's threads, or in the calling
/// thread when there is one thread or one item.
pub fn map<T, R, F>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync + Send,
{
    use rayon::prelude::*;
    if rayon::current_num_threads() <= 1 || items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    // Each slot is taken by the one task of its index; the locks are never contended.
    let slots: Vec<Mutex<(Option<T>, Option<R>)>> = items
        .into_iter()
        .map(|t| Mutex::new((Some(t), None)))
        .collect();
    let task = |i: usize| {
        let mut slot = lock(&slots[i]);
        if let Some(t) = slot.0.take() {
            slot.1 = Some(f(t));
        }
    };
    if !run(slots.len(), &task) {
        (0..slots.len()).into_par_iter().for_each(task);
    }
    slots
        .into_iter()
        .filter_map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()).1)
        .collect()
}

/// A buffer that tasks write at disjoint offsets.
pub(crate) struct Disjoint(pub(crate) *mut f32);
// SAFETY: only used to write disjoint ranges from different tasks (see `for_chunks`).
unsafe impl Sync for Disjoint {}

impl Disjoint {
    pub(crate) fn at(&self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

thread_local! {
    /// Set while this thread runs a pool task.
    static IN_TASK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `f(i)` with [`IN_TASK`] set, so that kernels it calls run inline.
fn as_task(f: &(dyn Fn(usize) + Sync), i: usize) {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_TASK.set(self.0);
        }
    }
    let _reset = Reset(IN_TASK.replace(true));
    f(i)
}

/// `AHA_SPIN=0` turns the pool off (every kernel on rayon), for side-by-side measurements.
fn disabled() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| std::env::var("AHA_SPIN").is_ok_and(|v| v == "0"))
}

impl Pool {
    fn new(threads: usize) -> Option<Self> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: Mutex::new(None),
            tasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            parked: Mutex::new(0),
            wake: Condvar::new(),
        });
        for i in 1..threads {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("aha-spin-{i}"))
                .spawn(move || helper(&s))
                .ok()?;
        }
        Some(Self {
            threads,
            shared,
            busy: Mutex::new(()),
        })
    }

    fn dispatch(&self, n: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
        let _busy = match self.busy.try_lock() {
            Ok(g) => g,
            // A task panicked during an earlier job; the pool itself was left consistent.
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        let s = &*self.shared;
        // SAFETY: helpers use the reference only while they are counted in `active` for
        // the open job, and `Close` (also run if a task panics here) closes the job and
        // waits for `active` to reach 0 before this function returns.
        let job: &'static Task<'static> = unsafe { std::mem::transmute(f) };
        *lock(&s.job) = Some(job);
        s.tasks.store(n, Ordering::Relaxed);
        s.next.store(0, Ordering::Relaxed);
        // A job that unwound from the calling thread may have left a helper's flag set.
        s.panicked.store(false, Ordering::Relaxed);
        let open = s.epoch.load(Ordering::Relaxed) + 1;
        s.epoch.store(open, Ordering::SeqCst);
        if *lock(&s.parked) > 0 {
            s.wake.notify_all();
        }
        let close = Close { s, open };
        loop {
            let i = s.next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            as_task(f, i);
        }
        drop(close);
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a task panicked on a spin-pool helper thread");
        }
        true
    }
}

/// Ends a job: no more claims, no new helpers, then waits until every helper that joined
/// has left (a task is only claimed by a joined helper, so all claimed tasks are done).
struct Close<'a> {
    s: &'a Shared,
    open: u64,
}

impl Drop for Close<'_> {
    fn drop(&mut self) {
        let s = self.s;
        // Normally every task is claimed already; after a panic this stops the rest.
        s.next.store(usize::MAX / 2, Ordering::Relaxed);
        s.epoch.store(self.open + 1, Ordering::SeqCst);
        let mut spins = 0u32;
        while s.active.load(Ordering::SeqCst) != 0 {
            spins += 1;
            if spins > 1 << 14 {
                // A helper was descheduled mid-task: let it run.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        *lock(&s.job) = None;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn helper(s: &Shared) {
    let mut seen = 0u64;
    loop {
        // Wait for an open job newer than the last one seen: spin, then park.
        let started = Instant::now();
        let mut e = s.epoch.load(Ordering::Acquire);
        let mut spins = 0u32;
        while e.is_multiple_of(2) || e == seen {
            spins = spins.wrapping_add(1);
            // Reading the clock costs more than a spin: look every 256.
            if spins.is_multiple_of(256) && started.elapsed() > SPIN {
                let mut parked = lock(&s.parked);
                *parked += 1;
                loop {
                    e = s.epoch.load(Ordering::Acquire);
                    if e % 2 == 1 && e != seen {
                        break;
                    }
                    parked = s
                        .wake
                        .wait_timeout(parked, Duration::from_millis(50))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                *parked -= 1;
                break;
            }
            std::hint::spin_loop();
            e = s.epoch.load(Ordering::Acquire);
        }
        seen = e;
        s.active.fetch_add(1, Ordering::SeqCst);
        if s.epoch.load(Ordering::SeqCst) != e {
            // Closed before we joined: nothing of it is ours.
            s.active.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let job = *lock(&s.job);
        let n = s.tasks.load(Ordering::Relaxed);
        if let Some(f) = job {
            loop {
                let i = s.next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if catch_unwind(AssertUnwindSafe(|| as_task(f, i))).is_err() {
                    s.panicked.store(true, Ordering::Relaxed);
                }
            }
        }
        s.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of its own (the global one is sized by whichever test asks first).
    fn pool() -> Pool {
        Pool::new(2).expect("threads")
    }

    #[test]
    fn every_task_runs_once() {
        let p = pool();
        for n in [0usize, 1, 2, 3, 17, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            assert!(p.dispatch(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            }));
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "n = {n}"
            );
        }
    }

    /// A kernel called from a pool task runs inline on the task's thread (all of its
    /// tasks, once each), and the thread is a task no more once the task returns.
    #[test]
    fn kernels_inside_a_task_run_inline() {
        let p = pool();
        let hits: Vec<AtomicUsize> = (0..8 * 5).map(|_| AtomicUsize::new(0)).collect();
        assert!(p.dispatch(8, &|i| {
            let me = std::thread::current().id();
            assert!(run(5, &|j| {
                assert_eq!(std::thread::current().id(), me);
                hits[i * 5 + j].fetch_add(1, Ordering::Relaxed);
            }));
        }));
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        assert!(!IN_TASK.get());
    }

    /// `map` returns each item's result in the items' order, each item taken once (moved,
    /// not cloned), in pools of one to three threads.
    #[test]
    fn map_keeps_the_order() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for n in [0usize, 1, 2, 33] {
                let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
                let out = pool.install(|| map(items, |s| s.parse::<usize>().unwrap() * 3));
                assert_eq!(
                    out,
                    (0..n).map(|i| i * 3).collect::<Vec<_>>(),
                    "{threads}, {n}"
                );
            }
        }
    }

    /// Tasks that panic (on whichever thread) make the job panic, and the pool works after,
    /// also when tasks on both threads panicked.
    #[test]
    fn a_panicking_task_leaves_the_pool_usable() {
        let p = pool();
        let bad: [&(dyn Fn(usize) -> bool + Sync); 4] =
            [&|i| i == 0, &|i| i == 5, &|i| i == 63, &|_| true];
        for (case, is_bad) in bad.iter().enumerate() {
            let out = catch_unwind(AssertUnwindSafe(|| {
                p.dispatch(64, &|i| assert!(!is_bad(i), "task {i} fails"))
            }));
            assert!(out.is_err(), "case {case}: the panic went unseen");
            let count = AtomicUsize::new(0);
            let ok = catch_unwind(AssertUnwindSafe(|| {
                p.dispatch(100, &|_| {
                    count.fetch_add(1, Ordering::Relaxed);
                })
            }));
            assert!(matches!(ok, Ok(true)), "case {case}: the next job failed");
            assert_eq!(count.load(Ordering::Relaxed), 100);
        }
    }
}
