//! One replication connection: reads and queued writes on a split stream.

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::{CLOSE_FLUSH_TIMEOUT, READ_CHUNK};
use crate::server::net::Stream;

/// The outcome of [`Connection::transfer`].
pub(super) enum Transfer {
    /// Bytes arrived; [`Connection::received`] returns them.
    Received(usize),
    /// The peer closed the connection, or it failed.
    Closed(String),
}

enum Sent {
    Wrote(std::io::Result<usize>),
    Flushed(std::io::Result<()>),
}

/// A connection with a queue of bytes to send. Sending runs while the driver waits for
/// input, so the driver keeps reading while the peer is slow to read what it sends.
pub(super) struct Connection<S> {
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    buffer: Vec<u8>,
    outbound: Vec<u8>,
    unflushed: bool,
    max_outbound: usize,
}

impl<S: Stream> Connection<S> {
    /// Wraps `stream`. Past `max_outbound` queued bytes the driver stops taking input until
    /// the peer has read some.
    pub(super) fn new(stream: S, max_outbound: usize) -> Connection<S> {
        let (reader, writer) = tokio::io::split(stream);
        Connection {
            reader,
            writer,
            buffer: vec![0; READ_CHUNK],
            outbound: Vec::new(),
            unflushed: false,
            max_outbound,
        }
    }

    /// Queues one frame.
    pub(super) fn queue(&mut self, frame: &[u8]) {
        self.outbound.extend_from_slice(frame);
    }

    /// Returns whether the queue is past its bound.
    pub(super) fn backlogged(&self) -> bool {
        self.outbound.len() >= self.max_outbound
    }

    /// Returns the first `count` bytes of the last read.
    pub(super) fn received(&self, count: usize) -> &[u8] {
        &self.buffer[..count]
    }

    /// Sends queued bytes until bytes arrive, reading only when `read` is set. It is cancel
    /// safe: the queue loses nothing when the future is dropped.
    pub(super) async fn transfer(&mut self, read: bool) -> Transfer {
        loop {
            let writing = !self.outbound.is_empty();
            let flushing = self.unflushed && !writing;
            // One step of sending: a write while bytes are queued, then one flush. Each step is
            // a single cancel-safe operation.
            let send = async {
                if writing {
                    Sent::Wrote(self.writer.write(&self.outbound).await)
                } else {
                    Sent::Flushed(self.writer.flush().await)
                }
            };
            tokio::select! {
                biased;
                result = self.reader.read(&mut self.buffer), if read => {
                    return match result {
                        Ok(0) => Transfer::Closed("the peer closed the connection".into()),
                        Ok(count) => Transfer::Received(count),
                        Err(error) => Transfer::Closed(format!("reading failed: {error}")),
                    };
                }
                sent = send, if writing || flushing => match sent {
                    Sent::Wrote(Ok(0)) => {
                        return Transfer::Closed("the connection closed while sending".into());
                    }
                    Sent::Wrote(Ok(count)) => {
                        self.outbound.drain(..count);
                        self.unflushed = true;
                    }
                    Sent::Flushed(Ok(())) => self.unflushed = false,
                    Sent::Wrote(Err(error)) | Sent::Flushed(Err(error)) => {
                        return Transfer::Closed(format!("sending failed: {error}"));
                    }
                },
                else => std::future::pending::<()>().await,
            }
        }
    }

    /// Sends what is queued, within a short timeout, and shuts the stream down.
    pub(super) async fn close(mut self) {
        let outbound = std::mem::take(&mut self.outbound);
        let writer = &mut self.writer;
        let send = async move {
            writer.write_all(&outbound).await?;
            writer.shutdown().await
        };
        if let Ok(Err(error)) = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, send).await {
            tracing::debug!(%error, "replication connection did not close cleanly");
        }
    }
}
