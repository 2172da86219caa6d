//! The Kafka wire protocol: frame checks, version negotiation and dispatch to handlers.
//!
//! A request frame goes through, in order: a header sanity check (length, API key and version
//! against what we advertise), the length guard (`guard`, which walks the body and refuses any
//! array, string or bytes length larger than what is left, so the codec never allocates from an
//! unchecked length), the `kafka-protocol` decoder, and a handler. Anything malformed closes
//! that one connection with a logged reason; it never panics and never affects other clients.

pub(crate) mod acl;
pub(crate) mod api_versions;
pub(crate) mod codes;
pub(crate) mod guard;
mod handlers;

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::cluster::ClusterCore;

/// Who sent a request.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// The broker that received it.
    pub(crate) node_id: i32,
    /// The client's address (for group member descriptions).
    pub(crate) client_host: String,
}

/// What to do with a frame.
#[derive(Debug)]
pub(crate) enum FrameOutcome {
    /// Write this response (already framed with its size prefix).
    Respond(BytesMut),
    /// No response (Produce with acks=0).
    Silent,
    /// Close the connection, for the logged reason.
    Close(String),
}

/// The context a handler runs in.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    /// Cluster state.
    pub(crate) core: &'a Arc<ClusterCore>,
    /// Connection.
    pub(crate) conn: &'a ConnInfo,
    /// Request header.
    pub(crate) header: &'a RequestHeader,
    /// API version of the request.
    pub(crate) version: i16,
}

impl Ctx<'_> {
    /// Node id of the receiving broker.
    pub(crate) fn node_id(&self) -> i32 {
        self.conn.node_id
    }
    /// Current time (ms).
    pub(crate) fn now(&self) -> i64 {
        self.core.clock.now_ms()
    }
    /// Client id of the request, or "".
    pub(crate) fn client_id(&self) -> String {
        self.header.client_id.as_ref().map(|s| s.to_string()).unwrap_or_default()
    }
}

/// Peeks the API key, version and correlation id of a frame body.
fn peek_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let b = frame.get(0..8)?;
    Some((
        i16::from_be_bytes([b[0], b[1]]),
        i16::from_be_bytes([b[2], b[3]]),
        i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    ))
}

/// A decoded request frame.
#[derive(Debug)]
pub(crate) struct Decoded {
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    header: RequestHeader,
    request: RequestKind,
}

/// Checks and decodes one request frame (the bytes after the 4-byte size). `Err` carries what
/// to do instead of handling it: an early response (ApiVersions too new) or a close.
pub(crate) fn decode_frame(frame: Bytes) -> Result<Decoded, FrameOutcome> {
    let Some((key, version, correlation_id)) = peek_header(&frame) else {
        return Err(FrameOutcome::Close(format!("request frame of {} bytes is too short for a header", frame.len())));
    };
    if key == ApiKey::ApiVersions as i16 {
        if let Some(resp) = api_versions::unsupported_version_response(version, correlation_id) {
            return Err(FrameOutcome::Respond(resp));
        }
    }
    let Some(range) = api_versions::advertised(key) else {
        return Err(FrameOutcome::Close(format!("unsupported API key {key} (correlation id {correlation_id})")));
    };
    if version < range.0 || version > range.1 {
        return Err(FrameOutcome::Close(format!(
            "unsupported version {version} of API key {key}; supported {}..={}",
            range.0, range.1
        )));
    }
    let Ok(api) = ApiKey::try_from(key) else {
        return Err(FrameOutcome::Close(format!("unknown API key {key}")));
    };
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api.request_header_version(version))
        .map_err(|e| FrameOutcome::Close(format!("malformed request header for API key {key}: {e}")))?;
    guard::check_request_body(key, version, &buf)
        .map_err(|e| FrameOutcome::Close(format!("malformed API key {key} v{version} request: {e}")))?;
    let decoded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| RequestKind::decode(api, &mut buf, version)));
    let request = match decoded {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(FrameOutcome::Close(format!("malformed API key {key} v{version} request: {e}"))),
        Err(_) => return Err(FrameOutcome::Close(format!("API key {key} v{version} request made the decoder panic"))),
    };
    Ok(Decoded { api, version, correlation_id, header, request })
}

/// Handles one request frame (the bytes after the 4-byte size); a response is encoded into
/// `out` (cleared first), a buffer the connection reuses.
pub(crate) async fn handle_frame(
    core: &Arc<ClusterCore>,
    conn: &ConnInfo,
    frame: Bytes,
    out: BytesMut,
) -> FrameOutcome {
    let d = match decode_frame(frame) {
        Ok(d) => d,
        Err(outcome) => return outcome,
    };
    let delay = core.response_delays.lock().get(&(d.api as i16)).copied();
    if let Some(delay) = delay {
        // Fault injection (`Cluster::delay_responses`): a slow broker or network for this API.
        // Requests on one connection are handled in order, so later ones wait too.
        tokio::time::sleep(delay).await;
    }
    match handle_request(core, conn, &d.header, d.version, d.request).await {
        Some(resp) => match encode_response(d.correlation_id, d.api, d.version, &resp, out) {
            Ok(b) => FrameOutcome::Respond(b),
            Err(e) => FrameOutcome::Close(format!(
                "cannot encode API key {} v{} response (bug): {e}",
                d.api as i16, d.version
            )),
        },
        None => FrameOutcome::Silent,
    }
}

/// Handles one decoded request: what every transport calls (the TCP server through
/// [`handle_frame`], the deterministic simulation directly). `None`: no response (acks=0).
pub(crate) async fn handle_request(
    core: &Arc<ClusterCore>,
    conn: &ConnInfo,
    header: &RequestHeader,
    version: i16,
    request: RequestKind,
) -> Option<ResponseKind> {
    let ctx = Ctx { core, conn, header, version };
    handlers::dispatch(&ctx, request).await
}

/// Frames a response into `out` (cleared first): size, header, body.
pub(crate) fn encode_response(
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    resp: &ResponseKind,
    mut out: BytesMut,
) -> anyhow_free::Result<BytesMut> {
    // Fetch responses carry megabytes of records: size the buffer once instead of doubling.
    let hint = match resp {
        ResponseKind::Fetch(f) => {
            f.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.records.as_ref().map_or(0, Bytes::len) + 96)
                .sum::<usize>()
                + 256
        }
        _ => 256,
    };
    out.clear();
    out.reserve(hint);
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut out, api.response_header_version(version)).map_err(anyhow_free::err)?;
    resp.encode(&mut out, version).map_err(anyhow_free::err)?;
    let size = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}

/// Keeps the codec's error type at the edge as a plain message.
pub(crate) mod anyhow_free {
    /// Result with a message error.
    pub(crate) type Result<T> = std::result::Result<T, String>;
    /// Converts any displayable error.
    pub(crate) fn err(e: impl std::fmt::Display) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests;
