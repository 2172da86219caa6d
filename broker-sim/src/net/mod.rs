//! The TCP shell: one listener per broker, one task per connection. Requests on a connection
//! are handled strictly in order (Kafka's ordering guarantee that idempotent producers rely
//! on); responses are buffered and flushed when no further request is already buffered.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cluster::ClusterCore;
use crate::protocol::{handle_frame, ConnInfo, FrameOutcome};

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
    // Ends when the peer closes (the size read fails).
    while let Ok(size) = rd.read_i32().await {
        if size < 0 || size as usize > max {
            tracing::warn!(node_id = info.node_id, %peer, size, max, "closing connection: request frame size out of bounds");
            break;
        }
        let size = size as usize;
        // Grow as bytes arrive instead of trusting the size up front.
        let mut frame = Vec::with_capacity(size.min(64 * 1024));
        match (&mut rd).take(size as u64).read_to_end(&mut frame).await {
            Ok(n) if n == size => {}
            _ => {
                tracing::warn!(node_id = info.node_id, %peer, size, "closing connection: truncated request frame");
                break;
            }
        }
        match handle_frame(&core, &info, Bytes::from(frame)).await {
            FrameOutcome::Respond(resp) => {
                if wr.write_all(&resp).await.is_err() {
                    break;
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
