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
    work: Option<Work>,
    ticket: Arc<Ticket>,
}

impl Drop for Job {
    fn drop(&mut self) {
        // A job dropped unrun (the writer gone) must not leave its waiters waiting forever.
        if self.work.is_some() {
            self.ticket.complete(Err("the store writer stopped before this write".into()));
        }
    }
}

fn run(mut job: Job) {
    let Some(work) = job.work.take() else { return };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err("the RocksDB write panicked".into()));
    job.ticket.complete(r);
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
    let job = Job { work: Some(work), ticket: ticket.clone() };
    let refused = match queue() {
        Some(q) => q.lock().unwrap_or_else(PoisonError::into_inner).send(job).err().map(|e| e.0),
        None => Some(job),
    };
    if let Some(job) = refused {
        run(job);
    }
    ticket
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use super::*;

    #[test]
    fn should_apply_jobs_in_order_and_report_each_outcome() {
        let (release, gate) = sync_channel::<()>(0);
        let (tx, rx) = channel::<u32>();
        let blocker = submit(Box::new(move || {
            gate.recv_timeout(std::time::Duration::from_secs(60))
                .map_err(|e| format!("the test never released the writer: {e}"))
        }));
        let tx2 = tx.clone();
        let first = submit(Box::new(move || tx.send(1).map_err(|e| e.to_string())));
        let failed = submit(Box::new(|| Err("refused".into())));
        let last = submit(Box::new(move || tx2.send(2).map_err(|e| e.to_string())));
        assert!(rx.try_recv().is_err(), "nothing runs while the writer is busy");
        release.send(()).unwrap();
        assert_eq!(blocker.wait(), Ok(()));
        assert_eq!(first.wait(), Ok(()));
        assert_eq!(failed.wait(), Err("refused".into()));
        assert_eq!(last.wait(), Ok(()));
        assert_eq!(rx.iter().collect::<Vec<_>>(), vec![1, 2], "in submission order");
    }

    #[test]
    fn should_complete_a_job_dropped_unrun_with_an_error() {
        let ticket = Arc::new(Ticket::default());
        drop(Job { work: Some(Box::new(|| Ok(()))), ticket: ticket.clone() });
        assert!(ticket.wait().is_err());
    }
}
