//! Where the live log goes: a writer thread between the agent's loop and
//! stdout, so that the loop goes back to the rings while the kernel copies
//! the output. Writing to a file cost this machine's kernel 190–580 ns per
//! event of the live log or `--json` (their lines are 200 and 380 bytes),
//! more than the rest of the agent's work per event, and a write can stall
//! (dirty-page writeback, a pager or a pipe whose reader paused) while the
//! rings fill unread.
//!
//! Chunks go to the thread through a bounded queue: when it is full, the
//! loop waits (the rings hold what comes meanwhile, and what they cannot
//! hold is counted as lost). To a file, chunks of 1 MiB and a queue of 16:
//! the page cache takes them in milliseconds. To a terminal or a pipe,
//! 64 KiB and a queue of one (at most three chunks in flight: the one
//! being filled, the one queued and the one being written): what is queued
//! is written before tcptrace can exit, and a slow reader would otherwise
//! hold it there behind megabytes. A flush hands over what is buffered
//! without waiting for it to be written; `finish` waits. The first error
//! of the thread (a closed pipe, a full disk) is returned by the next
//! write, flush or `finish`.

use std::{
    fs::File,
    io::{self, Write},
    os::fd::AsFd as _,
    sync::mpsc::{self, Receiver, SyncSender},
    thread::JoinHandle,
};

/// How much is handed over at a time, and how much can wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub chunk: usize,
    pub queue: usize,
}

impl Sizes {
    /// For a regular file: 16 MiB can wait, about as much as a CPU's ring
    /// holds.
    pub const FILE: Self = Self {
        chunk: 1 << 20,
        queue: 16,
    };
    /// For a terminal or a pipe.
    pub const STREAM: Self = Self {
        chunk: 64 << 10,
        queue: 1,
    };

    /// Those for stdout as it is now.
    pub fn for_stdout() -> Self {
        // /proc/self/fd/1 resolves to the file, pipe or terminal itself.
        match std::fs::metadata("/proc/self/fd/1") {
            Ok(m) if m.is_file() => Self::FILE,
            _ => Self::STREAM,
        }
    }
}

/// stdout as tcptrace writes it: a duplicate of fd 1. std's `Stdout` takes
/// EBADF for success (so that a closed fd 1 is no error), so a descriptor
/// open read-only would lose every line silently; a duplicate reports it as
/// any other write error. Where fd 1 cannot be duplicated (closed), that is
/// the error of the first write: nothing is lost unsaid, and a daemon that
/// writes nothing is not stopped by it.
pub struct Stdout(io::Result<File>);

impl Stdout {
    pub fn open() -> Self {
        Self(io::stdout().as_fd().try_clone_to_owned().map(File::from))
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.0
            .as_mut()
            .map_err(|err| io::Error::new(err.kind(), err.to_string()))
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

/// Written chunks kept for reuse: more would stay allocated after a stall.
const SPARE: usize = 2;

/// The thread's first error, as its kind and text (an `io::Error` is not
/// `Clone`, and is reported both where it happens and at `finish`).
type Failure = (io::ErrorKind, String);

pub struct Output {
    sizes: Sizes,
    buf: Vec<u8>,
    to_writer: Option<SyncSender<Vec<u8>>>,
    /// Written chunks, back for reuse.
    spare: Receiver<Vec<u8>>,
    failed: Receiver<Failure>,
    failure: Option<Failure>,
    writer: Option<JoinHandle<()>>,
}

impl Output {
    /// Starts the writer thread, which writes to what `open` gives it
    /// (called on that thread: stdout's lock is not `Send`, and what the
    /// thread must give up is its own); an error of `open` is `spawn`'s.
    pub fn spawn<W: Write>(
        sizes: Sizes,
        open: impl FnOnce() -> io::Result<W> + Send + 'static,
    ) -> io::Result<Self> {
        let (to_writer, chunks) = mpsc::sync_channel::<Vec<u8>>(sizes.queue);
        let (give_back, spare) = mpsc::sync_channel(SPARE);
        let (fail, failed) = mpsc::sync_channel(1);
        let (opened, ready) = mpsc::sync_channel(1);
        let writer = std::thread::Builder::new()
            .name("tcptrace-output".into())
            .spawn(move || {
                let mut out = match open() {
                    Ok(out) => {
                        let _ = opened.send(Ok(()));
                        out
                    }
                    Err(err) => {
                        let _ = opened.send(Err(err));
                        return;
                    }
                };
                for mut chunk in chunks.iter() {
                    // Flushed at once: a reader of the live log sees each
                    // drain's lines as they come.
                    if let Err(err) = out.write_all(&chunk).and_then(|()| out.flush()) {
                        let _ = fail.try_send((err.kind(), err.to_string()));
                        // Dropping `chunks` makes the loop's next send fail.
                        return;
                    }
                    chunk.clear();
                    // One grown by a long write is not kept at that size.
                    chunk.shrink_to(sizes.chunk);
                    let _ = give_back.try_send(chunk);
                }
            })?;
        ready
            .recv()
            .map_err(|_| io::Error::other("the output thread ended at once"))??;
        Ok(Self {
            sizes,
            buf: Vec::with_capacity(sizes.chunk),
            to_writer: Some(to_writer),
            spare,
            failed,
            failure: None,
            writer: Some(writer),
        })
    }

    /// The writer thread's first error, once it has one.
    fn check(&mut self) -> io::Result<()> {
        if self.failure.is_none() {
            self.failure = self.failed.try_recv().ok();
        }
        match &self.failure {
            Some((kind, text)) => Err(io::Error::new(*kind, text.clone())),
            None => Ok(()),
        }
    }

    /// Hands the buffered bytes to the writer thread, waiting while its
    /// queue is full.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return self.check();
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.sizes.chunk));
        let chunk = std::mem::replace(&mut self.buf, next);
        let sent = match &self.to_writer {
            Some(tx) => tx.send(chunk).is_ok(),
            None => false,
        };
        if !sent {
            // The thread stopped: it says why (or it panicked).
            self.join();
            self.check()?;
            return Err(io::Error::other("the output thread stopped"));
        }
        self.check()
    }

    fn join(&mut self) {
        self.to_writer = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }

    /// Writes out everything handed over, and stops the thread.
    pub fn finish(&mut self) -> io::Result<()> {
        let handed = self.hand_over();
        self.join();
        self.check()?;
        handed
    }
}

impl Write for Output {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buf.len() + bytes.len() > self.sizes.chunk && !self.buf.is_empty() {
            self.hand_over()?;
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write(bytes).map(drop)
    }

    /// Hands over without waiting for the write: see `finish`.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into shared memory, failing after `fail_after` bytes.
    #[derive(Clone)]
    struct Shared {
        bytes: Arc<Mutex<Vec<u8>>>,
        fail_after: usize,
        kind: io::ErrorKind,
    }

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut bytes = self.bytes.lock().unwrap();
            if bytes.len() + b.len() > self.fail_after {
                return Err(io::Error::new(self.kind, "no space left on device"));
            }
            bytes.extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn shared(fail_after: usize, kind: io::ErrorKind) -> Shared {
        Shared {
            bytes: Arc::default(),
            fail_after,
            kind,
        }
    }

    #[test]
    fn what_the_writer_cannot_prepare_is_the_spawns_error() {
        let err = Output::spawn(Sizes::STREAM, || {
            Err::<Vec<u8>, _>(io::Error::other("cannot drop capabilities"))
        })
        .map(|_| ())
        .unwrap_err();
        assert_eq!(err.to_string(), "cannot drop capabilities");
    }

    #[test]
    fn writes_everything_in_order() {
        let sink = shared(usize::MAX, io::ErrorKind::Other);
        let mut out = Output::spawn(Sizes::STREAM, {
            let sink = sink.clone();
            move || Ok(sink)
        })
        .unwrap();
        let mut expected = Vec::new();
        for i in 0..200_000u32 {
            let line = format!("line {i}\n");
            out.write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
            if i % 1000 == 0 {
                out.flush().unwrap();
            }
        }
        out.finish().unwrap();
        assert_eq!(*sink.bytes.lock().unwrap(), expected);
    }

    #[test]
    fn a_chunk_larger_than_the_buffer_goes_whole() {
        let sink = shared(usize::MAX, io::ErrorKind::Other);
        let mut out = Output::spawn(Sizes::FILE, {
            let sink = sink.clone();
            move || Ok(sink)
        })
        .unwrap();
        let chunk = Sizes::FILE.chunk;
        out.write_all(b"head\n").unwrap();
        out.write_all(&vec![b'x'; 3 * chunk]).unwrap();
        out.finish().unwrap();
        assert_eq!(sink.bytes.lock().unwrap().len(), 5 + 3 * chunk);
    }

    #[test]
    fn the_writers_error_comes_back_with_its_kind() {
        let sink = shared(3 * Sizes::FILE.chunk, io::ErrorKind::StorageFull);
        let mut out = Output::spawn(Sizes::FILE, move || Ok(sink)).unwrap();
        let line = [b'y'; 1000];
        let err = (0..100_000)
            .find_map(|_| out.write_all(&line).and_then(|()| out.flush()).err())
            .expect("the full disk is reported");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(err.to_string().contains("no space left"), "{err}");
        // And again at the end: nothing is taken for written.
        assert_eq!(out.finish().unwrap_err().kind(), io::ErrorKind::StorageFull);
    }

    /// A writer that blocks a while, then fails: the loop, waiting on a
    /// full queue meanwhile, gets the error instead of waiting forever.
    struct Stuck;

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            std::thread::sleep(std::time::Duration::from_millis(200));
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "reader gone"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_loop_waiting_on_a_full_queue_learns_the_writer_failed() {
        let mut out = Output::spawn(Sizes::STREAM, || Ok(Stuck)).unwrap();
        let chunk = vec![b'z'; Sizes::STREAM.chunk];
        let started = std::time::Instant::now();
        let err = (0..100)
            .find_map(|_| out.write_all(&chunk).and_then(|()| out.flush()).err())
            .expect("the error comes back");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(started.elapsed() >= std::time::Duration::from_millis(150));
        assert!(out.finish().is_err());
    }

    #[test]
    fn an_error_at_the_last_write_is_not_lost() {
        let sink = shared(10, io::ErrorKind::BrokenPipe);
        let mut out = Output::spawn(Sizes::STREAM, move || Ok(sink)).unwrap();
        out.write_all(b"more than ten bytes\n").unwrap();
        out.flush().unwrap_or(());
        assert_eq!(out.finish().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
