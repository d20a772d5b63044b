//! One replication connection: reads and queued writes on a split stream.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

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
    /// Bytes at the front of `outbound` already sent. They are dropped once they make up half
    /// the buffer, so a slow peer does not cost a shift of the whole queue per write.
    sent: usize,
    unflushed: bool,
    max_outbound: usize,
    /// Why the connection ended, when [`Connection::read_ready`] saw it end. The next
    /// [`Connection::transfer`] reports it.
    ended: Option<String>,
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
            sent: 0,
            unflushed: false,
            max_outbound,
            ended: None,
        }
    }

    /// Queues one frame.
    pub(super) fn queue(&mut self, frame: &[u8]) {
        self.outbound.extend_from_slice(frame);
    }

    /// Marks `count` more queued bytes as sent.
    fn consume(&mut self, count: usize) {
        self.sent += count;
        if self.sent == self.outbound.len() {
            self.outbound.clear();
            self.sent = 0;
        } else if self.sent >= self.outbound.len() / 2 {
            self.outbound.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Returns whether the queue is past its bound.
    pub(super) fn backlogged(&self) -> bool {
        self.outbound.len() - self.sent >= self.max_outbound
    }

    /// Returns the first `count` bytes of the last read.
    pub(super) fn received(&self, count: usize) -> &[u8] {
        &self.buffer[..count]
    }

    /// Appends to the last read, which returned `count` bytes, whatever the connection can
    /// deliver without waiting, until `limit` bytes are held, and returns the new count.
    ///
    /// A receiver that applies each read in its own flushed transaction calls this first, so
    /// that a backlog arrives in as few transactions as possible. The buffer keeps the size
    /// it grew to, at most `limit`.
    pub(super) fn read_ready(&mut self, mut count: usize, limit: usize) -> usize {
        let mut context = Context::from_waker(Waker::noop());
        while count < limit && self.ended.is_none() {
            let end = count.saturating_add(READ_CHUNK).min(limit);
            if self.buffer.len() < end {
                self.buffer.resize(end, 0);
            }
            let mut buf = ReadBuf::new(&mut self.buffer[count..end]);
            match Pin::new(&mut self.reader).poll_read(&mut context, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    self.ended = Some("the peer closed the connection".into());
                }
                Poll::Ready(Ok(())) => count += buf.filled().len(),
                Poll::Ready(Err(error)) => self.ended = Some(format!("reading failed: {error}")),
                Poll::Pending => break,
            }
        }
        count
    }

    /// Sends queued bytes until bytes arrive, reading only when `read` is set. It is cancel
    /// safe: the queue loses nothing when the future is dropped.
    pub(super) async fn transfer(&mut self, read: bool) -> Transfer {
        if let Some(reason) = self.ended.take() {
            return Transfer::Closed(reason);
        }
        loop {
            let writing = self.sent < self.outbound.len();
            let flushing = self.unflushed && !writing;
            // One step of sending: a write while bytes are queued, then one flush. Each step is
            // a single cancel-safe operation.
            let send = async {
                if writing {
                    Sent::Wrote(self.writer.write(&self.outbound[self.sent..]).await)
                } else {
                    Sent::Flushed(self.writer.flush().await)
                }
            };
            tokio::select! {
                biased;
                result = self.reader.read(&mut self.buffer[..READ_CHUNK]), if read => {
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
                        self.consume(count);
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
        let mut outbound = std::mem::take(&mut self.outbound);
        outbound.drain(..self.sent);
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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::{Connection, Transfer};

    async fn received(conn: &mut Connection<tokio::io::DuplexStream>) -> usize {
        match conn.transfer(true).await {
            Transfer::Received(count) => count,
            Transfer::Closed(reason) => panic!("connection closed: {reason}"),
        }
    }

    #[tokio::test]
    async fn read_ready_stops_at_limit() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut conn = Connection::new(near, 1024);
        let sent: Vec<u8> = (0..300_000u32).map(|n| n as u8).collect();
        far.write_all(&sent).await.unwrap();

        let first = received(&mut conn).await;
        assert!(first <= super::READ_CHUNK, "one read took {first} bytes");
        let count = conn.read_ready(first, 200_000);
        assert_eq!(count, 200_000);
        assert_eq!(conn.received(count), &sent[..count]);

        // Nothing more is waiting past what arrived.
        let next = received(&mut conn).await;
        let count = conn.read_ready(next, 1 << 20);
        assert_eq!(conn.received(count), &sent[200_000..]);
    }

    #[tokio::test]
    async fn queue_survives_partial_writes() {
        use tokio::io::AsyncReadExt;

        let (near, mut far) = tokio::io::duplex(4096);
        let mut conn = Connection::new(near, 1 << 20);
        let frames: Vec<Vec<u8>> = (0..50u8).map(|n| vec![n; 10_000]).collect();
        for frame in &frames {
            conn.queue(frame);
        }
        let expected = frames.concat();
        let reader = tokio::spawn(async move {
            let mut arrived = vec![0; expected.len()];
            far.read_exact(&mut arrived).await.unwrap();
            assert!(arrived == expected, "the bytes arrived out of order");
        });

        // Sending runs while the reader takes the bytes; it ends when the reader has them all.
        tokio::select! {
            biased;
            read = reader => read.unwrap(),
            outcome = conn.transfer(false) => match outcome {
                Transfer::Closed(reason) => panic!("sending stopped: {reason}"),
                Transfer::Received(count) => panic!("{count} bytes received while not reading"),
            },
        };
        assert!(!conn.backlogged());
        assert_eq!(conn.outbound.len() - conn.sent, 0);
    }

    #[tokio::test]
    async fn read_ready_defers_close() {
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let mut conn = Connection::new(near, 1024);
        far.write_all(b"last bytes").await.unwrap();
        drop(far);

        let first = received(&mut conn).await;
        let count = conn.read_ready(first, 1 << 20);
        assert_eq!(conn.received(count), b"last bytes");
        match conn.transfer(true).await {
            Transfer::Closed(reason) => assert!(reason.contains("closed"), "{reason}"),
            Transfer::Received(count) => panic!("{count} bytes after the close"),
        }
    }
}
