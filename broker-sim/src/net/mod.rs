//! The TCP shell: one listener per broker, one task per connection. Requests on a connection
//! are handled strictly in order (Kafka's ordering guarantee that idempotent producers rely
//! on); responses are buffered and flushed when no further request is already buffered.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cluster::ClusterCore;
use crate::protocol::{handle_frame, ConnInfo, FrameOutcome};

/// The largest frame buffer a connection keeps for its next request.
const KEEP_FRAME_BUFFER: usize = 4 << 20;
/// The largest response buffer a connection keeps for its next response.
const KEEP_RESPONSE_BUFFER: usize = 64 << 20;

/// Reads a frame of `size` bytes into the empty `buf`, growing it as bytes arrive rather than
/// trusting the size up front.
async fn read_frame(rd: &mut (impl AsyncRead + Unpin), buf: &mut BytesMut, size: usize) -> std::io::Result<()> {
    while buf.len() < size {
        let want = size - buf.len();
        buf.reserve(want.min(64 * 1024));
        if rd.take(want as u64).read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Accepts connections for broker `node_id` until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    core: Arc<ClusterCore>,
    node_id: i32,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let info = ConnInfo { node_id, client_host: format!("/{}", peer.ip()) };
                    let core = Arc::clone(&core);
                    conns.spawn(async move { connection(stream, core, info).await });
                }
                Err(e) => {
                    tracing::warn!(node_id, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn connection(stream: TcpStream, core: Arc<ClusterCore>, info: ConnInfo) {
    let peer = info.client_host.clone();
    let max = core.config.max_request_bytes;
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    let mut wr = BufWriter::with_capacity(256 * 1024, wr);
    // Each frame is read into this buffer and split off it; once the request built from the
    // frame is dropped, the next frame reuses the same memory instead of fresh pages.
    let mut buf = BytesMut::new();
    // Responses are encoded into this buffer, kept between requests: a fetch response of
    // megabytes in a fresh buffer each time paid a page fault per 4 KiB page.
    let mut spare = BytesMut::new();
    // Ends when the peer closes (the size read fails).
    while let Ok(size) = rd.read_i32().await {
        if size < 0 || size as usize > max {
            tracing::warn!(node_id = info.node_id, %peer, size, max, "closing connection: request frame size out of bounds");
            break;
        }
        let size = size as usize;
        if read_frame(&mut rd, &mut buf, size).await.is_err() {
            tracing::warn!(node_id = info.node_id, %peer, size, "closing connection: truncated request frame");
            break;
        }
        let frame = buf.split().freeze();
        let outcome = handle_frame(&core, &info, frame, std::mem::take(&mut spare)).await;
        if size > KEEP_FRAME_BUFFER {
            // Do not hold on to the memory of one huge request.
            buf = BytesMut::new();
        }
        match outcome {
            FrameOutcome::Respond(resp) => {
                if wr.write_all(&resp).await.is_err() {
                    break;
                }
                if resp.capacity() <= KEEP_RESPONSE_BUFFER {
                    spare = resp;
                }
            }
            FrameOutcome::Silent => {}
            FrameOutcome::Close(reason) => {
                tracing::warn!(node_id = info.node_id, %peer, %reason, "closing connection");
                break;
            }
        }
        if rd.buffer().len() < 4 && wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.flush().await;
}
