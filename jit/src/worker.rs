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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use iced_x86::Instruction;

use crate::cache::{BlockFn, BlockId, CacheError, CodeCache};
use crate::translate::{TranslateEnv, TranslateStats};

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
// neither reads those slots nor frees them before the job is done (see the module header).
unsafe impl Send for SendEnv {}

/// What the dispatcher asks the worker to do.
enum Request {
    Compile {
        block: BlockId,
        epoch: u64,
        region: Vec<Arc<[Instruction]>>,
        env: SendEnv,
    },
    /// Free all code compiled so far (nothing may run it any more), then say so.
    Flush(mpsc::Sender<()>),
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

/// The handle of the compile thread.
pub struct CompileWorker {
    requests: Option<mpsc::Sender<Request>>,
    results: mpsc::Receiver<Compiled>,
    /// Results sent and not yet taken: lets the dispatcher skip the channel when there are none.
    ready: Arc<AtomicUsize>,
    /// Set when the handle is dropped: the thread skips the jobs still queued.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CompileWorker {
    /// Start a compile thread compiling into `cache`.
    pub fn spawn(mut cache: CodeCache) -> Result<Self, WorkerError> {
        let (requests, jobs) = mpsc::channel::<Request>();
        let (done, results) = mpsc::channel();
        let ready = Arc::new(AtomicUsize::new(0));
        let counter = ready.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("jit-compile".into())
            .spawn(move || {
                for r in jobs {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    match r {
                        Request::Compile {
                            block,
                            epoch,
                            region,
                            env,
                        } => {
                            let started = Instant::now();
                            let code = cache.compile(region, &env.0);
                            let micros = started.elapsed().as_micros() as u64;
                            let c = Compiled {
                                block,
                                epoch,
                                code,
                                micros,
                            };
                            if done.send(c).is_err() {
                                break;
                            }
                            counter.fetch_add(1, Ordering::Release);
                        }
                        Request::Flush(ack) => {
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
            requests: Some(requests),
            results,
            ready,
            stop,
            thread: Some(thread),
        })
    }

    /// Queue block `block` (submitted in flush epoch `epoch`) with its region (see
    /// [`crate::region`]) for translation and compilation. `env`'s chain slots must stay
    /// allocated until [`CompileWorker::flush`] returned.
    pub fn submit(
        &self,
        block: BlockId,
        epoch: u64,
        region: Vec<Arc<[Instruction]>>,
        env: TranslateEnv,
    ) -> Result<(), WorkerError> {
        self.send(Request::Compile {
            block,
            epoch,
            region,
            env: SendEnv(env),
        })
    }

    /// Wait until every job queued so far is done, then free all the code compiled so far.
    /// The caller must not run, or keep links to, any of that code.
    pub fn flush(&self) -> Result<(), WorkerError> {
        let (ack, done) = mpsc::channel();
        self.send(Request::Flush(ack))?;
        done.recv().map_err(|_| WorkerError::Stopped)
    }

    fn send(&self, r: Request) -> Result<(), WorkerError> {
        self.requests
            .as_ref()
            .ok_or(WorkerError::Stopped)?
            .send(r)
            .map_err(|_| WorkerError::Stopped)
    }

    /// A finished job, if any; a plain atomic load when there is none.
    pub fn try_take(&self) -> Option<Compiled> {
        if self.ready.load(Ordering::Acquire) == 0 {
            return None;
        }
        let c = self.results.try_recv().ok()?;
        self.ready.fetch_sub(1, Ordering::AcqRel);
        Some(c)
    }

    /// Wait for the next finished job (`None` when the thread is gone).
    #[cfg(test)]
    fn wait(&self) -> Option<Compiled> {
        let c = self.results.recv().ok()?;
        self.ready.fetch_sub(1, Ordering::AcqRel);
        Some(c)
    }
}

impl Drop for CompileWorker {
    fn drop(&mut self) {
        // The thread stops at the next job (a vCPU going away does not wait for a queue of
        // compiles), or when the closed channel runs dry; its cache frees the code.
        self.stop.store(true, Ordering::Relaxed);
        self.requests = None;
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

    /// `mov eax, 7; hlt` in 32-bit code, decoded.
    fn block() -> Arc<[Instruction]> {
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
        d.insns.into()
    }

    fn env(loop_limit: &u64, kick: &bool) -> TranslateEnv {
        TranslateEnv {
            mode: ModeInfo {
                bitness: 32,
                stack_size: 4,
                seg_access: 0,
            },
            helpers: helpers::table(),
            loop_limit,
            kick,
            chain: None,
        }
    }

    #[test]
    fn compiles_in_order_tags_results_and_flushes() {
        let (limit, kick) = (u64::MAX, false);
        let w = CompileWorker::spawn(CodeCache::new().unwrap()).unwrap();
        assert!(w.try_take().is_none());
        let insns = block();
        w.submit(3, 0, vec![insns.clone()], env(&limit, &kick))
            .unwrap();
        w.submit(4, 1, vec![insns.clone()], env(&limit, &kick))
            .unwrap();
        let a = w.wait().unwrap();
        let b = w.wait().unwrap();
        assert_eq!((a.block, a.epoch, b.block, b.epoch), (3, 0, 4, 1));
        let (fa, sa) = a.code.unwrap();
        let (fb, _) = b.code.unwrap();
        assert_ne!(fa as usize, fb as usize);
        // MOV is translated inline; HLT goes to the interpreter.
        assert_eq!((sa.inline, sa.interpreted), (1, 1));
        assert!(w.try_take().is_none());
        // Jobs queued before a flush are done when it returns.
        w.submit(5, 1, vec![insns], env(&limit, &kick)).unwrap();
        w.flush().unwrap();
        assert_eq!(w.try_take().map(|c| c.block), Some(5));
    }
}
