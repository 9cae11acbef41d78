//! Group commit for the embedded store: one writer thread owns the write connection and
//! commits the writes waiting for it together, in one transaction with one `fsync`.
//!
//! Each write runs in its own savepoint inside the batch's transaction, so a write that
//! fails (a taken name, a lost compare-and-set) is rolled back alone and the others still
//! commit. No caller hears back before the batch's `COMMIT` returned: with
//! `synchronous = FULL` an acknowledged write is on disk, exactly as with one transaction
//! per write. Batching needs no timer: the writes that arrive while one batch commits form
//! the next, so a lone write commits at once and many concurrent ones share the disk's
//! flushes.

use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

/// A write waiting for the writer thread.
trait Job: Send {
    /// Runs the write inside the batch's transaction, in its own savepoint.
    fn run(&mut self, conn: &Connection);
    /// Delivers the outcome once the batch's commit has succeeded or failed.
    fn finish(self: Box<Self>, commit: &Result<(), rusqlite::Error>);
}

struct Write<R, F> {
    f: Option<F>,
    outcome: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Job for Write<R, F>
where
    R: Send,
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) {
        if let Some(f) = self.f.take() {
            self.outcome = Some(in_savepoint(conn, f));
        }
    }

    fn finish(self: Box<Self>, commit: &Result<(), rusqlite::Error>) {
        let outcome = match (self.outcome, commit) {
            // Written, but the transaction holding it did not commit.
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(copy_error(e)),
            (Some(outcome), _) => outcome,
            (None, Ok(())) => Err(StoreError::Task("write was not run".into())),
        };
        // The caller may have given up waiting (its request timed out); the write stands.
        let _ = self.reply.send(outcome);
    }
}

/// Runs `f` in a savepoint: released when it succeeds, rolled back when it fails or
/// panics.
fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    conn.execute_batch("SAVEPOINT write")?;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(StoreError::Task("a write panicked".into())));
    match outcome {
        Ok(r) => {
            conn.execute_batch("RELEASE write")?;
            Ok(r)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO write; RELEASE write")?;
            Err(e)
        }
    }
}

/// Runs the batch in one transaction and commits it.
fn commit_batch(conn: &Connection, batch: &mut [Box<dyn Job + '_>]) -> Result<(), rusqlite::Error> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        job.run(conn);
    }
    let committed = conn.execute_batch("COMMIT");
    if committed.is_err() && !conn.is_autocommit() {
        // Nothing of the batch may stay half-applied on the connection.
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "rolling back a failed batch failed");
        }
    }
    committed
}

/// The same error again, for each write of a batch whose commit failed; the SQLite error
/// code is kept, so a full disk still reads as unavailable.
fn copy_error(e: &rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            StoreError::Db(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        other => StoreError::Unavailable(format!("commit failed: {other}")),
    }
}

/// Runs one write in its own transaction on `conn`, as the writer thread would in a batch
/// of one (for a store whose single connection cannot be handed to a thread of its own).
pub(super) fn write_alone<R, F>(conn: &Connection, f: F) -> Result<R, StoreError>
where
    R: Send,
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
{
    let (reply, outcome) = oneshot::channel();
    let mut batch: [Box<dyn Job + '_>; 1] = [Box::new(Write {
        f: Some(f),
        outcome: None,
        reply,
    })];
    let commit = commit_batch(conn, &mut batch);
    let [job] = batch;
    job.finish(&commit);
    outcome
        .blocking_recv()
        .map_err(|_| StoreError::Task("write was not run".into()))?
}

/// The writer thread and the queue in front of it.
#[derive(Debug)]
pub(super) struct Writer {
    queue: Mutex<Option<mpsc::Sender<Box<dyn Job>>>>,
    thread: Mutex<Option<JoinHandle<Connection>>>,
}

impl std::fmt::Debug for dyn Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Writer {
    /// Starts the writer thread, which owns `conn` until [`Writer::close`].
    pub(super) fn start(conn: Connection) -> Result<Self, StoreError> {
        let (queue, jobs) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("pd-store-writer".into())
            .spawn(move || run(conn, jobs))
            .map_err(|e| StoreError::Task(format!("cannot start the store writer: {e}")))?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `f` and waits until the batch holding it has committed.
    pub(super) async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Write {
            f: Some(f),
            outcome: None,
            reply,
        });
        {
            let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let queue = queue.as_ref().ok_or(StoreError::Closed)?;
            queue.send(job).map_err(|_| StoreError::Closed)?;
        }
        outcome
            .await
            .map_err(|_| StoreError::Task("the store writer stopped".into()))?
    }

    /// Stops taking writes, lets the writer commit what is queued, and hands back its
    /// connection (to be closed by the caller). `None` when already closed.
    pub(super) fn close(&self) -> Result<Option<Connection>, StoreError> {
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        match thread {
            Some(t) => t
                .join()
                .map(Some)
                .map_err(|_| StoreError::Task("the store writer panicked".into())),
            None => Ok(None),
        }
    }
}

/// The writer thread: takes whatever is queued (at most [`MAX_BATCH`]), commits it, answers,
/// and repeats until every sender is gone.
fn run(conn: Connection, jobs: mpsc::Receiver<Box<dyn Job>>) -> Connection {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = commit_batch(&conn, &mut batch);
        if let Err(e) = &commit {
            tracing::warn!(error = %e, writes = batch.len(), "a batch of writes did not commit");
        }
        for job in batch {
            job.finish(&commit);
        }
    }
    conn
}
