//! [`ReadAhead`] over real loopback sockets: every byte once and in order whatever the
//! read sizes, few socket reads for a large frame, `Pending` and its wakeup, end of
//! stream, and nothing held once drained.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::{ReadAhead, CHUNK};

/// tungstenite's read size in herald (`upgrade::READ_BUFFER`).
const SMALL: usize = 64;

/// A connected loopback pair: (client, server).
async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// `len` bytes that differ from their neighbours, so a lost or repeated byte shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// An inner stream that counts the reads that reached it and returned.
struct Counted<R> {
    inner: R,
    reads: usize,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let done = Pin::new(&mut self.inner).poll_read(cx, buf);
        if done.is_ready() {
            self.reads += 1;
        }
        done
    }
}

/// One read of at most `size` bytes, as tungstenite makes them.
async fn read_some<R: AsyncRead + Unpin>(r: &mut ReadAhead<R>, size: usize) -> Vec<u8> {
    let mut buf = vec![0; size];
    let n = tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf))
        .await
        .expect("read timed out")
        .unwrap();
    buf.truncate(n);
    buf
}

/// Whether one poll of a read returns at once (with a waker that does nothing).
fn poll_once<R: AsyncRead + Unpin>(r: &mut ReadAhead<R>, buf: &mut [u8]) -> Poll<usize> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut rb = ReadBuf::new(buf);
    match Pin::new(r).poll_read(&mut cx, &mut rb) {
        Poll::Ready(Ok(())) => Poll::Ready(rb.filled().len()),
        Poll::Ready(Err(e)) => panic!("read failed: {e}"),
        Poll::Pending => Poll::Pending,
    }
}

#[tokio::test]
async fn every_byte_arrives_once_and_in_order_whatever_the_read_sizes() {
    let (mut client, server) = socket_pair().await;
    let sent = pattern(300 * 1024 + 17);
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            // Writes of uneven sizes, some larger than a chunk, some of one byte.
            let mut rest = &sent[..];
            for size in [1, 63, 64, 65, 5000, CHUNK + 3, 70_000].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (now, later) = rest.split_at((*size).min(rest.len()));
                client.write_all(now).await.unwrap();
                rest = later;
            }
            client.shutdown().await.unwrap();
        })
    };
    let mut reader = ReadAhead::new(server);
    let mut got = Vec::new();
    // Reads of uneven sizes too: tungstenite's 64, smaller, and larger than a chunk.
    for size in [SMALL, 1, 14, SMALL, 300, CHUNK, CHUNK * 2, 7]
        .iter()
        .cycle()
    {
        let bytes = read_some(&mut reader, *size).await;
        if bytes.is_empty() {
            break;
        }
        assert!(bytes.len() <= *size);
        got.extend_from_slice(&bytes);
    }
    writer.await.unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "bytes were lost, repeated or reordered");
    assert_eq!(reader.held(), 0);
}

#[tokio::test]
async fn a_64_kib_frame_takes_a_few_socket_reads_not_one_per_64_bytes() {
    let (mut client, server) = socket_pair().await;
    let frame = pattern(64 * 1024);
    client.write_all(&frame).await.unwrap();
    client.shutdown().await.unwrap();
    let mut reader = ReadAhead::new(Counted {
        inner: server,
        reads: 0,
    });

    let mut got = Vec::new();
    loop {
        let bytes = read_some(&mut reader, SMALL).await;
        if bytes.is_empty() {
            break;
        }
        got.extend_from_slice(&bytes);
    }

    assert!(got == frame);
    let reads = reader.get_ref().reads;
    // 64 KiB in 16 KiB chunks is 4 reads, plus the end of stream; loopback may split it.
    assert!(
        reads <= 2 * (64 * 1024 / CHUNK) + 1,
        "{reads} socket reads for 64 KiB"
    );
}

#[tokio::test]
async fn what_was_read_ahead_is_held_only_until_handed_out() {
    let (mut client, server) = socket_pair().await;
    let mut reader = ReadAhead::new(server);
    assert_eq!(reader.held(), 0, "nothing is held before the first read");

    client.write_all(&pattern(100)).await.unwrap();
    let first = read_some(&mut reader, SMALL).await;
    // Loopback delivers the 100 bytes together; the 36 not asked for are held.
    assert_eq!(first, pattern(100)[..SMALL]);
    assert_eq!(reader.held(), 100 - SMALL);

    // Held bytes come back at once, with nothing more on the socket.
    let mut buf = [0; 20];
    assert_eq!(poll_once(&mut reader, &mut buf), Poll::Ready(20));
    assert_eq!(buf, pattern(100)[SMALL..SMALL + 20]);
    assert_eq!(reader.held(), 16);
    let rest = read_some(&mut reader, SMALL).await;
    assert_eq!(rest, pattern(100)[SMALL + 20..]);
    assert_eq!(reader.held(), 0, "drained: the allocation is freed");
}

#[tokio::test]
async fn an_empty_socket_is_pending_and_its_next_bytes_wake_the_reader() {
    let (mut client, server) = socket_pair().await;
    let mut reader = ReadAhead::new(server);
    let mut buf = [0; SMALL];
    assert_eq!(poll_once(&mut reader, &mut buf), Poll::Pending);
    assert_eq!(reader.held(), 0, "a pending read holds nothing");

    let read = tokio::spawn(async move {
        let mut buf = [0; SMALL];
        let n = reader.read(&mut buf).await.unwrap();
        (buf[..n].to_vec(), reader.held())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !read.is_finished(),
        "read returned before anything was sent"
    );
    client.write_all(b"hello").await.unwrap();

    let (got, held) = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the reader was never woken")
        .unwrap();
    assert_eq!(got, b"hello");
    assert_eq!(held, 0);
}

#[tokio::test]
async fn held_bytes_come_before_the_end_of_stream() {
    let (mut client, server) = socket_pair().await;
    client.write_all(&pattern(100)).await.unwrap();
    client.shutdown().await.unwrap();
    let mut reader = ReadAhead::new(server);

    let mut got = read_some(&mut reader, SMALL).await;
    got.extend(read_some(&mut reader, SMALL).await);

    assert_eq!(got, pattern(100));
    assert!(
        read_some(&mut reader, SMALL).await.is_empty(),
        "end of stream"
    );
    assert!(
        read_some(&mut reader, SMALL).await.is_empty(),
        "and it stays"
    );
    assert_eq!(reader.held(), 0);
}

/// An inner stream that returns scripted results: bytes, `Pending` or an error.
struct Script(VecDeque<Poll<io::Result<Vec<u8>>>>);

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.0.pop_front() {
            Some(Poll::Ready(Ok(bytes))) => {
                buf.put_slice(&bytes);
                Poll::Ready(Ok(()))
            }
            Some(Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
            Some(Poll::Pending) => Poll::Pending,
            None => Poll::Ready(Ok(())),
        }
    }
}

#[tokio::test]
async fn an_error_after_held_bytes_comes_after_them_and_pending_holds_nothing() {
    let reset = || io::Error::from(io::ErrorKind::ConnectionReset);
    let mut reader = ReadAhead::new(Script(VecDeque::from([
        Poll::Pending,
        Poll::Ready(Ok(pattern(100))),
        Poll::Ready(Err(reset())),
    ])));
    let mut buf = [0; SMALL];
    assert_eq!(poll_once(&mut reader, &mut buf), Poll::Pending);
    assert_eq!(reader.held(), 0);
    assert_eq!(poll_once(&mut reader, &mut buf), Poll::Ready(SMALL));
    assert_eq!(poll_once(&mut reader, &mut buf), Poll::Ready(100 - SMALL));

    let err = poll_fn(|cx| Pin::new(&mut reader).poll_read(cx, &mut ReadBuf::new(&mut buf)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn an_empty_buffer_reads_nothing_and_holds_nothing() {
    let mut reader = ReadAhead::new(Script(VecDeque::from([Poll::Ready(Ok(pattern(10)))])));
    assert_eq!(poll_once(&mut reader, &mut []), Poll::Ready(0));
    assert_eq!(reader.held(), 0);
    let mut buf = [0; SMALL];
    assert_eq!(
        poll_once(&mut reader, &mut buf),
        Poll::Ready(10),
        "the bytes are still there"
    );
}
