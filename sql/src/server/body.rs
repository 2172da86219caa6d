//! Response bodies: whole ones, and streamed ones fed from a channel (a push query's rows).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};

/// The body of every response.
pub(crate) type ResponseBody = BoxBody<Bytes, Infallible>;

/// A whole body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed()
}

/// A body whose chunks arrive on a channel; it ends when the sender is dropped. When the
/// client goes away, the receiver is dropped and the sender sees its channel closed.
pub(crate) struct ChannelBody(pub(crate) tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A streamed body.
pub(crate) fn streamed(rx: tokio::sync::mpsc::Receiver<Bytes>) -> ResponseBody {
    ChannelBody(rx).boxed()
}
