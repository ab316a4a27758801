//! The Stream RPC's response body, framed here rather than by tonic's encoder: tonic encodes
//! every message into a buffer of its own, copying each output chunk once more and faulting
//! in fresh pages for it (most of the daemon's page faults while streaming). Here a chunk of
//! output goes out as two HTTP/2 data frames: a few bytes of gRPC and protobuf header, then
//! the chunk's own `Bytes`, untouched. Small chunks are gathered into one buffer instead, as
//! tonic does. Everything else about the call (the request, the caller, the handler) is the
//! generated server's; [`FramedStream`] routes only this one path to [`respond`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message;
use rrocker_proto::frame::{self, PREFIX};
use rrocker_proto::v1::task_service_server::{TaskService, TaskServiceServer};
use rrocker_proto::v1::{StreamRequest, StreamResponse, stream_response::Event};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service as TowerService, http};
use tonic::server::NamedService;

use super::{OutputStream, Service};

/// The path of the Stream method.
const PATH: &str = "/rrocker.v1.TaskService/Stream";
/// Chunks at least this long go out as frames of their own (no copy); shorter ones are
/// copied into a shared buffer.
const OWN_FRAME: usize = 4 << 10;
/// A shared buffer is sent once it holds this much (tonic's own yield threshold).
const GATHER: usize = 32 << 10;
/// The longest Stream request taken (the message is a task id and a few fields).
const MAX_REQUEST: usize = 64 << 10;

/// The task service, with its Stream responses framed by [`respond`].
#[derive(Debug, Clone)]
pub struct FramedStream {
    service: Service,
    server: TaskServiceServer<Service>,
}

impl FramedStream {
    /// `service` behind its generated server, but for Stream.
    pub fn new(service: Service) -> Self {
        Self { server: TaskServiceServer::new(service.clone()), service }
    }
}

impl NamedService for FramedStream {
    const NAME: &'static str = <TaskServiceServer<Service> as NamedService>::NAME;
}

impl TowerService<http::Request<Body>> for FramedStream {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        TowerService::<http::Request<Body>>::poll_ready(&mut self.server, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == PATH {
            let service = self.service.clone();
            Box::pin(async move { Ok(respond(service, request).await) })
        } else {
            self.server.call(request)
        }
    }
}

/// Answers one Stream call: decodes its request, runs the handler, frames what it yields.
async fn respond(service: Service, request: http::Request<Body>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let message = match read_request(body).await {
        Ok(message) => message,
        Err(status) => return status.into_http(),
    };
    let request = tonic::Request::from_http(http::Request::from_parts(parts, message));
    match service.stream(request).await {
        Ok(response) => {
            let (metadata, events, _) = response.into_parts();
            let mut answer = http::Response::new(Body::new(Frames::new(events)));
            *answer.headers_mut() = metadata.into_headers();
            answer.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            answer
        }
        Err(status) => status.into_http(),
    }
}

/// The request's one message.
async fn read_request(body: Body) -> Result<StreamRequest, Status> {
    let limited = http_body_util::Limited::new(body, MAX_REQUEST + PREFIX);
    let bytes = limited
        .collect()
        .await
        .map_err(|error| Status::invalid_argument(format!("cannot read the request: {error}")))?
        .to_bytes();
    let Some((compressed, length)) = frame::parse(&bytes) else {
        return Err(Status::invalid_argument("the request holds no message"));
    };
    if compressed {
        return Err(Status::unimplemented("compressed requests are not accepted"));
    }
    if bytes.len() != PREFIX + length {
        return Err(Status::invalid_argument("the request is not one message"));
    }
    StreamRequest::decode(bytes.slice(PREFIX..))
        .map_err(|error| Status::invalid_argument(format!("cannot decode the request: {error}")))
}

/// The response body: the handler's events as gRPC messages, then its status as trailers.
struct Frames {
    events: OutputStream,
    /// Frames ready to go, in order.
    ready: VecDeque<Bytes>,
    /// Small messages gathered to go as one frame.
    gathered: BytesMut,
    /// The trailers, once the events have ended.
    trailers: Option<http::HeaderMap>,
    ended: bool,
}

impl Frames {
    fn new(events: OutputStream) -> Self {
        Self {
            events,
            ready: VecDeque::new(),
            gathered: BytesMut::new(),
            trailers: None,
            ended: false,
        }
    }

    /// Queues one message: a large output chunk as its header and its own bytes, anything
    /// else encoded into the gathered buffer.
    fn push(&mut self, message: StreamResponse) {
        match message.event {
            Some(Event::Output(output)) if output.data.len() >= OWN_FRAME => {
                self.flush();
                let mut head = BytesMut::with_capacity(PREFIX + 16);
                let data = output_head(output, &mut head);
                self.ready.push_back(head.freeze());
                self.ready.push_back(data);
            }
            event => {
                let message = StreamResponse { event };
                self.gathered.reserve(PREFIX + message.encoded_len());
                frame::encode(&message, &mut self.gathered);
            }
        }
    }

    /// Moves the gathered messages to the ready frames.
    fn flush(&mut self) {
        if !self.gathered.is_empty() {
            self.ready.push_back(self.gathered.split().freeze());
        }
    }

    /// Ends the body with `status` as its trailers.
    fn end(&mut self, status: &Status) {
        self.flush();
        let mut trailers = http::HeaderMap::new();
        if status.add_header(&mut trailers).is_err() {
            trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
        }
        self.trailers = Some(trailers);
        self.ended = true;
    }
}

/// Writes into `head` the gRPC prefix and protobuf header of a `StreamResponse` holding
/// `output`, all but its data, and returns the data: `head` and the data, sent one after the
/// other, are that message with its fields in the order fd, at_ns, data (prost would put
/// at_ns last; any order is valid protobuf, and this one keeps the data last, uncopied).
fn output_head(output: rrocker_proto::v1::Output, head: &mut BytesMut) -> Bytes {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, int32, uint64};
    // proto3 leaves out fields at their defaults: fd 0, time 0, no data.
    let fd_len = if output.fd == 0 { 0 } else { int32::encoded_len(1, &output.fd) };
    let at_len = if output.at_ns == 0 { 0 } else { uint64::encoded_len(3, &output.at_ns) };
    let data_len = output.data.len();
    let data_field_len =
        if data_len == 0 { 0 } else { prost::encoding::bytes::encoded_len(2, &output.data) };
    let inner = fd_len + at_len + data_field_len;
    let outer = 1 + encoded_len_varint(inner as u64) + inner;
    head.put_slice(&frame::prefix(outer));
    encode_key(1, WireType::LengthDelimited, head);
    encode_varint(inner as u64, head);
    if output.fd != 0 {
        int32::encode(1, &output.fd, head);
    }
    if output.at_ns != 0 {
        uint64::encode(3, &output.at_ns, head);
    }
    if data_len != 0 {
        encode_key(2, WireType::LengthDelimited, head);
        encode_varint(data_len as u64, head);
    }
    output.data
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = &mut *self;
        while this.ready.is_empty() && !this.ended {
            match futures_util::Stream::poll_next(this.events.as_mut(), cx) {
                Poll::Ready(Some(Ok(message))) => {
                    this.push(message);
                    if this.gathered.len() >= GATHER {
                        this.flush();
                    }
                }
                Poll::Ready(Some(Err(status))) => this.end(&status),
                Poll::Ready(None) => this.end(&Status::ok("")),
                Poll::Pending if this.gathered.is_empty() => return Poll::Pending,
                Poll::Pending => this.flush(),
            }
        }
        if let Some(data) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
        }
        Poll::Ready(this.trailers.take().map(|trailers| Ok(http_body::Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.ready.is_empty() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use rrocker_proto::v1::{Fd, Output, TaskStatus};

    use super::*;

    fn encoded(message: &StreamResponse) -> Vec<u8> {
        let mut whole = Vec::new();
        frame::encode(message, &mut whole);
        whole
    }

    #[test]
    fn an_output_head_and_its_data_are_the_message_as_prost_decodes_it() {
        for (fd, length, at_ns) in
            [(Fd::Stdout, 0, 0), (Fd::Stderr, 1, 1), (Fd::Stdout, 127, 1_764_633_600_000_000_000)]
                .into_iter()
                .chain([(Fd::Stdout, 128, u64::MAX), (Fd::Stderr, 16_383, 5)])
                .chain([(Fd::Stdout, 65_536, 1 << 60), (Fd::Unspecified, 300, 0)])
        {
            let output = Output { fd: fd.into(), data: Bytes::from(vec![7u8; length]), at_ns };
            let message = StreamResponse { event: Some(Event::Output(output.clone())) };
            let whole = encoded(&message);
            let mut head = BytesMut::new();
            let data = output_head(output, &mut head);
            let ours = [&head[..], &data[..]].concat();
            assert_eq!(ours.len(), whole.len(), "{fd:?} {length} {at_ns}");
            assert_eq!(ours[..PREFIX], whole[..PREFIX], "the same gRPC prefix");
            let decoded = StreamResponse::decode(&ours[PREFIX..]).expect("valid protobuf");
            assert_eq!(decoded, message, "{fd:?} {length} {at_ns}");
        }
    }

    #[test]
    fn the_body_frames_every_message_in_order_and_ends_with_the_status() {
        let output = |length: usize| StreamResponse {
            event: Some(Event::Output(Output {
                fd: Fd::Stdout.into(),
                data: Bytes::from(vec![1u8; length]),
                ..Output::default()
            })),
        };
        let messages = vec![
            output(10),
            output(20),
            output(OWN_FRAME),
            output(5),
            StreamResponse { event: Some(Event::Status(TaskStatus::default())) },
        ];
        let expected: Vec<u8> = messages.iter().flat_map(encoded).collect();
        let events: OutputStream =
            Box::pin(futures_util::stream::iter(messages.into_iter().map(Ok)));
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let collected = runtime.block_on(Frames::new(events).collect()).expect("a body");
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers.get("grpc-status").map(|value| value.as_bytes()), Some(&b"0"[..]));
        assert_eq!(collected.to_bytes().to_vec(), expected);
    }

    #[test]
    fn an_error_from_the_handler_ends_the_body_with_its_status_after_what_came_before() {
        let before = StreamResponse {
            event: Some(Event::Output(Output {
                fd: Fd::Stderr.into(),
                data: Bytes::from("x\n"),
                at_ns: 7,
            })),
        };
        let expected = encoded(&before);
        let events: OutputStream = Box::pin(futures_util::stream::iter([
            Ok(before),
            Err(Status::internal("the log cannot be read")),
        ]));
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let collected = runtime.block_on(Frames::new(events).collect()).expect("a body");
        let trailers = collected.trailers().cloned().expect("trailers");
        let status = Status::from_header_map(&trailers).expect("a status");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "the log cannot be read");
        assert_eq!(collected.to_bytes().to_vec(), expected);
    }
}
