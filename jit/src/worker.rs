//! Background compilation: hot blocks are translated and compiled on a second host thread.
//!
//! Compiling a block costs as much as hundreds of interpreted runs of it, and a Linux boot
//! compiles thousands of blocks. The dispatcher hands a hot block to a [`CompileWorker`] and
//! keeps interpreting it until the code comes back, so the guest does not wait for Cranelift
//! while the host has a core to spare. The worker owns its own [`CodeCache`]: the executable
//! memory is allocated, protected and freed on its thread.
//!
//! What the worker touches of the dispatcher's: the instructions of the block's region (shared
//! through `Arc`s, so dropping the blocks cannot free them under the translator; the worker's
//! cache keeps them as long as the code), the block's own
//! [`crate::cache::ChainSlot`]s (the translator records each exit's target ip in its slot;
//! nothing else uses them until the code is installed, and the dispatcher frees them only after
//! [`CompileWorker::flush`] returned), and the addresses in [`TranslateEnv`], which end up as
//! constants in the code. Results carry the dispatcher's flush epoch: a result for a block
//! dropped in the meantime, or compiled before a flush, is thrown away.
//!
//! The queue is served newest first, and holds at most [`MAX_QUEUED`] jobs: when Cranelift falls
//! behind (a boot moves from one stretch of code to the next faster than their blocks compile),
//! the block that became hot last is the one the guest is most likely still running, and a
//! block that has waited behind [`MAX_QUEUED`] newer ones is dropped unstarted and handed back
//! ([`Done::Dropped`]) so that it has to become hot again before it is compiled. A queued block
//! the guest keeps running is moved to the front again ([`CompileWorker::promote`]): on a Linux
//! boot half of the instructions the interpreter ran were in blocks waiting in this queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use iced_x86::Instruction;

use crate::cache::{BlockFn, BlockId, CacheError, CodeCache};
use crate::translate::{TranslateEnv, TranslateStats};

/// Jobs the queue holds before the oldest is dropped (about 20-50 ms of Cranelift work on a
/// Linux boot's blocks).
pub const MAX_QUEUED: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot start the compile thread: {0}")]
    Spawn(String),
    #[error("the compile thread stopped")]
    Stopped,
}

/// A translation environment sent to the compile thread.
struct SendEnv(TranslateEnv);

// SAFETY: the raw pointers in a `TranslateEnv` are only embedded into generated code, except
// the chain slots, which the translator writes while the block is compiling; the dispatcher
// neither reads those slots nor frees them before the job is done or dropped (see the module
// header).
unsafe impl Send for SendEnv {}

/// One block to translate and compile.
struct Job {
    block: BlockId,
    epoch: u64,
    /// The block's region (see [`crate::region`]): its own instructions first.
    region: Vec<Arc<[Instruction]>>,
    env: SendEnv,
}

/// What the dispatcher and the compile thread share.
#[derive(Default)]
struct Queue {
    /// Oldest first; the thread takes from the back.
    jobs: VecDeque<Job>,
    /// A flush to do once the job in progress (if any) is done: its acknowledgement.
    flush: Option<mpsc::Sender<()>>,
    /// The handle is gone: the thread stops without doing the jobs left.
    stop: bool,
    /// Tests hold the thread before its next job to fill the queue deterministically.
    paused: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a job, a flush, a stop or a resume arrives.
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic on the compile thread while it holds the lock leaves the queue consistent
        // (every update is a single push/pop/take).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A compiled block (or why it could not be compiled).
pub struct Compiled {
    pub block: BlockId,
    /// The flush epoch the job was submitted in.
    pub epoch: u64,
    pub code: Result<(BlockFn, TranslateStats), CacheError>,
    /// Host time the job took on the compile thread.
    pub micros: u64,
}

/// A job the worker finished with.
pub enum Done {
    Compiled(Compiled),
    /// Dropped from a full queue before it started: the block (submitted in `epoch`) has no
    /// code and may be submitted again.
    Dropped {
        block: BlockId,
        epoch: u64,
    },
}

/// The handle of the compile thread.
pub struct CompileWorker {
    shared: Arc<Shared>,
    done: mpsc::Sender<Done>,
    results: mpsc::Receiver<Done>,
    /// Results sent and not yet taken: lets the dispatcher skip the channel when there are none.
    ready: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// What the thread does next.
enum Work {
    Compile(Job),
    Flush(mpsc::Sender<()>),
}

impl CompileWorker {
    /// Start a compile thread compiling into `cache`.
    pub fn spawn(cache: CodeCache) -> Result<Self, WorkerError> {
        Self::spawn_with(cache, false)
    }

    fn spawn_with(mut cache: CodeCache, paused: bool) -> Result<Self, WorkerError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                paused,
                ..Queue::default()
            }),
            wake: Condvar::new(),
        });
        let (done, results) = mpsc::channel();
        let ready = Arc::new(AtomicUsize::new(0));
        let counter = ready.clone();
        let theirs = shared.clone();
        let sender = done.clone();
        let thread = std::thread::Builder::new()
            .name("jit-compile".into())
            .spawn(move || {
                while let Some(work) = next_work(&theirs) {
                    match work {
                        Work::Compile(job) => {
                            let started = Instant::now();
                            let code = cache.compile(job.region, &job.env.0);
                            let micros = started.elapsed().as_micros() as u64;
                            let c = Compiled {
                                block: job.block,
                                epoch: job.epoch,
                                code,
                                micros,
                            };
                            if sender.send(Done::Compiled(c)).is_err() {
                                break;
                            }
                            counter.fetch_add(1, Ordering::Release);
                        }
                        Work::Flush(ack) => {
                            // SAFETY: the dispatcher flushes only after dropping every block
                            // and link to code compiled before; results still in flight carry
                            // an older epoch and are discarded unused.
                            unsafe { cache.flush() };
                            // The dispatcher waits for this; if it is gone, so is the work.
                            let _ = ack.send(());
                        }
                    }
                }
            })
            .map_err(|e| WorkerError::Spawn(e.to_string()))?;
        Ok(Self {
            shared,
            done,
            results,
            ready,
            thread: Some(thread),
        })
    }

    /// Queue block `block` (submitted in flush epoch `epoch`) with its region (see
    /// [`crate::region`]) for translation and compilation. `env`'s chain slots must stay
    /// allocated until the job is done, dropped, or [`CompileWorker::flush`] returned.
    pub fn submit(
        &self,
        block: BlockId,
        epoch: u64,
        region: Vec<Arc<[Instruction]>>,
        env: TranslateEnv,
    ) -> Result<(), WorkerError> {
        let dropped = {
            let mut q = self.shared.lock();
            if q.stop {
                return Err(WorkerError::Stopped);
            }
            q.jobs.push_back(Job {
                block,
                epoch,
                region,
                env: SendEnv(env),
            });
            if q.jobs.len() > MAX_QUEUED {
                q.jobs.pop_front()
            } else {
                None
            }
        };
        self.shared.wake.notify_one();
        if let Some(j) = dropped {
            self.done
                .send(Done::Dropped {
                    block: j.block,
                    epoch: j.epoch,
                })
                .map_err(|_| WorkerError::Stopped)?;
            self.ready.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// Serve block `block`'s job (submitted in `epoch`) next, if it is still queued. Returns
    /// whether it was (false: it is being compiled, done, or was dropped).
    pub fn promote(&self, block: BlockId, epoch: u64) -> bool {
        let mut q = self.shared.lock();
        let Some(i) = q
            .jobs
            .iter()
            .rposition(|j| j.block == block && j.epoch == epoch)
        else {
            return false;
        };
        if let Some(job) = q.jobs.remove(i) {
            q.jobs.push_back(job);
        }
        true
    }

    /// Forget the jobs not started yet (without reporting them), wait until the job in
    /// progress is done, then free all the code compiled so far. The caller must not run, or
    /// keep links to, any of that code, nor wait for the forgotten jobs.
    pub fn flush(&self) -> Result<(), WorkerError> {
        let (ack, acked) = mpsc::channel();
        {
            let mut q = self.shared.lock();
            q.jobs.clear();
            q.flush = Some(ack);
        }
        self.shared.wake.notify_one();
        acked.recv().map_err(|_| WorkerError::Stopped)
    }

    /// A finished job, if any; a plain atomic load when there is none (the dispatcher asks
    /// between every two blocks).
    #[inline]
    pub fn try_take(&self) -> Option<Done> {
        if self.ready.load(Ordering::Acquire) == 0 {
            return None;
        }
        let d = self.results.try_recv().ok()?;
        self.ready.fetch_sub(1, Ordering::AcqRel);
        Some(d)
    }

    /// Wait for the next finished job (`None` when the thread is gone).
    #[cfg(test)]
    fn wait(&self) -> Option<Done> {
        let d = self.results.recv().ok()?;
        self.ready.fetch_sub(1, Ordering::AcqRel);
        Some(d)
    }

    /// A worker that takes no job before [`CompileWorker::resume`] (tests fill its queue).
    #[cfg(test)]
    pub(crate) fn spawn_paused(cache: CodeCache) -> Result<Self, WorkerError> {
        Self::spawn_with(cache, true)
    }

    /// Let a worker started paused take jobs.
    #[cfg(test)]
    pub(crate) fn resume(&self) {
        self.shared.lock().paused = false;
        self.shared.wake.notify_one();
    }
}

/// Block until there is work: a flush first, then the newest job. `None`: stop.
fn next_work(shared: &Shared) -> Option<Work> {
    let mut q = shared.lock();
    loop {
        if q.stop {
            return None;
        }
        if let Some(ack) = q.flush.take() {
            return Some(Work::Flush(ack));
        }
        if !q.paused {
            if let Some(job) = q.jobs.pop_back() {
                return Some(Work::Compile(job));
            }
        }
        q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

impl Drop for CompileWorker {
    fn drop(&mut self) {
        // The thread stops before its next job (a vCPU going away does not wait for a queue of
        // compiles); its cache frees the code.
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("the JIT compile thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{helpers, ModeInfo};
    use decoder::{decode_block, BlockLimits};

    /// `mov eax, 7; hlt` in 32-bit code, decoded, as a one-block region.
    fn block() -> Vec<Arc<[Instruction]>> {
        let code = [0xb8, 7, 0, 0, 0, 0xf4];
        let d = decode_block(
            &code,
            0x1000,
            32,
            BlockLimits {
                max_insns: 64,
                page_bytes: code.len(),
            },
        );
        vec![d.insns.into()]
    }

    fn env(loop_limit: &u64) -> TranslateEnv {
        TranslateEnv {
            mode: ModeInfo {
                bitness: 32,
                stack_size: 4,
                seg_access: 0,
            },
            helpers: helpers::table(),
            loop_limit,
            chain: None,
        }
    }

    fn compiled(d: Done) -> Compiled {
        match d {
            Done::Compiled(c) => c,
            Done::Dropped { block, .. } => panic!("block {block} was dropped"),
        }
    }

    #[test]
    fn compiles_tags_results_and_flushes() {
        let limit = u64::MAX;
        let w = CompileWorker::spawn(CodeCache::new().unwrap()).unwrap();
        assert!(w.try_take().is_none());
        let insns = block();
        w.submit(3, 0, insns.clone(), env(&limit)).unwrap();
        let a = compiled(w.wait().unwrap());
        w.submit(4, 1, insns.clone(), env(&limit)).unwrap();
        let b = compiled(w.wait().unwrap());
        assert_eq!((a.block, a.epoch, b.block, b.epoch), (3, 0, 4, 1));
        let (fa, sa) = a.code.unwrap();
        let (fb, _) = b.code.unwrap();
        assert_ne!(fa, fb);
        // MOV is translated inline; HLT goes to the interpreter.
        assert_eq!((sa.inline, sa.interpreted), (1, 1));
        assert!(w.try_take().is_none());
        w.flush().unwrap();
        assert!(w.try_take().is_none());
        // The worker goes on compiling after a flush.
        w.submit(5, 2, insns, env(&limit)).unwrap();
        assert_eq!(compiled(w.wait().unwrap()).block, 5);
    }

    #[test]
    fn serves_the_newest_job_first_and_drops_the_oldest_past_the_cap() {
        let limit = u64::MAX;
        let w = CompileWorker::spawn_paused(CodeCache::new().unwrap()).unwrap();
        let insns = block();
        let total = MAX_QUEUED as BlockId + 2;
        for id in 0..total {
            w.submit(id, 0, insns.clone(), env(&limit)).unwrap();
        }
        // The two oldest jobs were handed back unstarted as the queue overflowed.
        for id in 0..2 {
            match w.try_take() {
                Some(Done::Dropped { block, epoch }) => assert_eq!((block, epoch), (id, 0)),
                _ => panic!("job {id} should have been dropped"),
            }
        }
        assert!(w.try_take().is_none(), "the paused worker compiled nothing");
        w.resume();
        let order: Vec<BlockId> = (2..total)
            .map(|_| compiled(w.wait().unwrap()).block)
            .collect();
        let newest_first: Vec<BlockId> = (2..total).rev().collect();
        assert_eq!(order, newest_first);
    }

    #[test]
    fn a_promoted_job_is_served_next() {
        let limit = u64::MAX;
        let w = CompileWorker::spawn_paused(CodeCache::new().unwrap()).unwrap();
        for id in 0..4 {
            w.submit(id, 0, block(), env(&limit)).unwrap();
        }
        assert!(w.promote(1, 0));
        assert!(!w.promote(1, 7), "another epoch's job is not this one");
        assert!(!w.promote(9, 0), "never submitted");
        w.resume();
        let order: Vec<BlockId> = (0..4).map(|_| compiled(w.wait().unwrap()).block).collect();
        assert_eq!(order, [1, 3, 2, 0]);
        assert!(!w.promote(1, 0), "already compiled");
    }

    #[test]
    fn a_flush_forgets_queued_jobs_unreported() {
        let limit = u64::MAX;
        let w = CompileWorker::spawn_paused(CodeCache::new().unwrap()).unwrap();
        for id in 0..3 {
            w.submit(id, 0, block(), env(&limit)).unwrap();
        }
        w.flush().unwrap();
        w.resume();
        w.submit(9, 1, block(), env(&limit)).unwrap();
        let c = compiled(w.wait().unwrap());
        assert_eq!((c.block, c.epoch), (9, 1));
        assert!(w.try_take().is_none());
    }
}
