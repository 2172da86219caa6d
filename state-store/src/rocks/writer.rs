//! The background writer: one process-wide thread that applies RocksDB writes in the order they
//! were submitted, so a store's commit (building the batch, memtable inserts and the
//! write-ahead log: about 1 µs per key) leaves the stream thread. The caller keeps each
//! commit's writes readable until its [`Ticket`] completes.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

/// The outcome of one submitted write.
#[derive(Debug, Default)]
pub(crate) struct Ticket {
    result: Mutex<Option<Result<(), String>>>,
    done: Condvar,
}

impl Ticket {
    fn complete(&self, r: Result<(), String>) {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        self.done.notify_all();
    }

    /// Waits until the write is applied; its result (RocksDB's error message).
    pub(crate) fn wait(&self) -> Result<(), String> {
        let mut r = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = r.as_ref() {
                return r.clone();
            }
            r = self.done.wait(r).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A write to run: builds and applies a batch, or says why not.
pub(crate) type Work = Box<dyn FnOnce() -> Result<(), String> + Send>;

struct Job {
    work: Work,
    ticket: Arc<Ticket>,
}

fn run(job: Job) {
    let Job { work, ticket } = job;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err("the RocksDB write panicked".into()));
    ticket.complete(r);
}

fn queue() -> Option<&'static Mutex<Sender<Job>>> {
    static QUEUE: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            std::thread::Builder::new()
                .name("moldau-store-writer".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        run(job);
                    }
                })
                .ok()
                .map(|_| Mutex::new(tx))
        })
        .as_ref()
}

/// Runs `work` in the background (in line when the writer thread cannot run).
pub(crate) fn submit(work: Work) -> Arc<Ticket> {
    let ticket = Arc::new(Ticket::default());
    let job = Job { work, ticket: ticket.clone() };
    let refused = match queue() {
        Some(q) => q.lock().unwrap_or_else(PoisonError::into_inner).send(job).err().map(|e| e.0),
        None => Some(job),
    };
    if let Some(job) = refused {
        run(job);
    }
    ticket
}
