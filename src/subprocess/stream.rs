//! Async ends of a child's pipes, driven by the loop's readers and writers.

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::kernel::{Errno, Fd, Kernel};
use crate::loom::sync::Mutex;

/// Bytes asked of the kernel per read.
const CHUNK: usize = 16 * 1024;

/// Waits, through a one-shot loop reader or writer, until `fd` is ready.
fn await_ready<K: Kernel>(
    event_loop: &EventLoop<K>,
    fd: Fd,
    readable: bool,
    cx: &mut Context<'_>,
) -> Result<()> {
    let waker: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(Some(cx.waker().clone())));
    // Weak: the callback lives in the loop's own table, and must not keep it alive.
    let lp = event_loop.downgrade();
    let callback = move || {
        // One shot: the task re-arms it if it still cannot make progress.
        if let Some(lp) = lp.upgrade() {
            let _ = if readable {
                lp.remove_reader(fd)
            } else {
                lp.remove_writer(fd)
            };
        }
        // Taken out first: waking the loop is a kernel call, and the short lock must
        // not be held across one.
        let waker = waker.lock().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    };
    if readable {
        event_loop.add_reader(fd, callback)?;
    } else {
        event_loop.add_writer(fd, callback)?;
    }
    Ok(())
}

/// The parent's read end of a child's stdout or stderr.
pub struct PipeReader<K: Kernel> {
    event_loop: EventLoop<K>,
    fd: Option<Fd>,
    buffer: Vec<u8>,
    eof: bool,
}

impl<K: Kernel> fmt::Debug for PipeReader<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PipeReader({:?}, eof={})", self.fd, self.eof)
    }
}

impl<K: Kernel> PipeReader<K> {
    /// Wraps a non-blocking read end; the reader owns it and closes it on drop.
    pub(crate) fn new(event_loop: EventLoop<K>, fd: Fd) -> PipeReader<K> {
        PipeReader {
            event_loop,
            fd: Some(fd),
            buffer: Vec::new(),
            eof: false,
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize>> {
        let Some(fd) = self.fd else {
            return Poll::Ready(Ok(0));
        };
        let kernel = self.event_loop.kernel().clone();
        let mut chunk = vec![0u8; CHUNK];
        loop {
            match kernel.read(fd, &mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Poll::Ready(Ok(0));
                }
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return Poll::Ready(Ok(n));
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    return match await_ready(&self.event_loop, fd, true, cx) {
                        Ok(()) => Poll::Pending,
                        Err(error) => Poll::Ready(Err(error)),
                    };
                }
                Err(errno) => return Poll::Ready(Err(errno.into())),
            }
        }
    }

    /// Up to `max` bytes; empty at end of file.
    ///
    /// # Errors
    ///
    /// The kernel's read error, or the loop's (closed, wrong thread).
    pub async fn read(&mut self, max: usize) -> Result<Vec<u8>> {
        if self.buffer.is_empty() && !self.eof {
            poll_fn(|cx| self.poll_fill(cx)).await?;
        }
        let n = max.min(self.buffer.len());
        Ok(self.buffer.drain(..n).collect())
    }

    /// One line, with its `\n`; at end of file, what is left (possibly empty).
    ///
    /// # Errors
    ///
    /// As [`PipeReader::read`].
    pub async fn readline(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some(at) = self.buffer.iter().position(|&b| b == b'\n') {
                return Ok(self.buffer.drain(..=at).collect());
            }
            if self.eof {
                return Ok(std::mem::take(&mut self.buffer));
            }
            poll_fn(|cx| self.poll_fill(cx)).await?;
        }
    }

    /// Everything up to end of file.
    ///
    /// # Errors
    ///
    /// As [`PipeReader::read`].
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>> {
        while !self.eof {
            poll_fn(|cx| self.poll_fill(cx)).await?;
        }
        Ok(std::mem::take(&mut self.buffer))
    }
}

impl<K: Kernel> Drop for PipeReader<K> {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            let _ = self.event_loop.remove_reader(fd);
            let _ = self.event_loop.kernel().close(fd);
        }
    }
}

/// The parent's write end of a child's stdin.
///
/// As asyncio's `StreamWriter`: [`write`](PipeWriter::write) buffers without
/// blocking, [`drain`](PipeWriter::drain) waits until the buffer is written;
/// [`write_all`](PipeWriter::write_all) does both.
pub struct PipeWriter<K: Kernel> {
    event_loop: EventLoop<K>,
    fd: Option<Fd>,
    buffer: Vec<u8>,
}

impl<K: Kernel> fmt::Debug for PipeWriter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PipeWriter({:?})", self.fd)
    }
}

impl<K: Kernel> PipeWriter<K> {
    /// Wraps a non-blocking write end; the writer owns it and closes it on drop.
    pub(crate) fn new(event_loop: EventLoop<K>, fd: Fd) -> PipeWriter<K> {
        PipeWriter {
            event_loop,
            fd: Some(fd),
            buffer: Vec::new(),
        }
    }

    /// Buffers `data` for the next [`PipeWriter::drain`].
    pub fn write(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Writes everything buffered, waiting while the pipe is full.
    ///
    /// # Errors
    ///
    /// As [`PipeWriter::write_all`].
    pub async fn drain(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.buffer);
        self.write_all(&pending).await
    }

    /// Writes all of `data`, waiting while the pipe is full.
    ///
    /// # Errors
    ///
    /// `Os(EPIPE)` once the child closed its end; `RuntimeError` after
    /// [`PipeWriter::close`]; the loop's errors.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        let fd = self
            .fd
            .ok_or_else(|| Error::runtime("write to a closed pipe"))?;
        let kernel = self.event_loop.kernel().clone();
        while !data.is_empty() {
            let step = poll_fn(|cx| {
                loop {
                    match kernel.write(fd, data) {
                        Ok(n) => return Poll::Ready(Ok(n)),
                        Err(Errno::EINTR) => continue,
                        Err(Errno::EAGAIN) => {
                            return match await_ready(&self.event_loop, fd, false, cx) {
                                Ok(()) => Poll::Pending,
                                Err(error) => Poll::Ready(Err(error)),
                            };
                        }
                        Err(errno) => return Poll::Ready(Err(Error::from(errno))),
                    }
                }
            })
            .await?;
            data = &data[step..];
        }
        Ok(())
    }

    /// Closes the pipe: the child reads end of file. Bytes still buffered by
    /// [`PipeWriter::write`] are dropped: drain first. Closing twice does nothing.
    ///
    /// # Errors
    ///
    /// The kernel's close error.
    pub fn close(&mut self) -> Result<()> {
        if let Some(fd) = self.fd.take() {
            let _ = self.event_loop.remove_writer(fd);
            self.event_loop.kernel().close(fd)?;
        }
        Ok(())
    }
}

impl<K: Kernel> Drop for PipeWriter<K> {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
