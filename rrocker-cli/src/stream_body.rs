//! A task's output stream read straight from the HTTP/2 body, without tonic's decoder, which
//! copies every data frame into a buffer of its own before decoding (6% of the CLI's CPU
//! while streaming). The daemon sends each output chunk as a header and the chunk's bytes
//! (`rrockerd::service::framed_stream`); here the chunk's bytes are handed on as the slices of
//! the data frames they came in, so a chunk may come as several pieces. A message of any
//! other shape (the final status, or an encoder that orders fields otherwise) is gathered
//! whole and decoded by prost. The wire is plain gRPC either way.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message;
use rrocker_proto::frame::{self, PREFIX};
use rrocker_proto::v1::stream_response::Event;
use rrocker_proto::v1::{Output, StreamRequest, StreamResponse};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::transport::Channel;

/// The path of the Stream method.
const PATH: &str = "/rrocker.v1.TaskService/Stream";
/// The longest message header this reader parses in place: the StreamResponse's key and
/// length, the Output's fd and time fields, the data's key and length (each varint at most
/// 5 bytes, the time's 10).
const MAX_HEAD: usize = 1 + 5 + 1 + 5 + 1 + 10 + 1 + 5;
/// The longest message taken whole (a final status is a few hundred bytes).
const MAX_WHOLE: usize = 16 << 20;

/// A task's output stream, message by message.
#[derive(Debug)]
pub struct OutputStream {
    body: Body,
    messages: Messages,
    /// Set once the body has ended (its trailers read).
    ended: bool,
}

impl OutputStream {
    /// Calls Stream with `request` on `channel`.
    pub async fn open(mut channel: Channel, request: StreamRequest) -> Result<Self, Status> {
        let mut message = Vec::with_capacity(PREFIX + request.encoded_len());
        frame::encode(&request, &mut message);
        let call = http::Request::builder()
            .method(http::Method::POST)
            .uri(PATH)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(Body::new(http_body_util::Full::new(Bytes::from(message))))
            .expect("a well-formed request");
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .map_err(|error| Status::from_error(error.into()))?;
        let response =
            channel.call(call).await.map_err(|error| Status::from_error(error.into()))?;
        let (parts, body) = response.into_parts();
        // A status in the headers is a trailers-only answer: the call failed before it began.
        if let Some(status) = Status::from_header_map(&parts.headers) {
            return Err(if status.code() == tonic::Code::Ok {
                Status::internal("the daemon ended the stream before it began")
            } else {
                status
            });
        }
        if parts.status != http::StatusCode::OK {
            return Err(Status::unknown(format!("the daemon answered HTTP {}", parts.status)));
        }
        Ok(Self { body, messages: Messages::default(), ended: false })
    }

    /// The next message: a piece of output (one chunk may come in several) or the final
    /// status; `None` at the end of a stream that ended well; the status of one that did not.
    pub async fn message(&mut self) -> Result<Option<StreamResponse>, Status> {
        loop {
            if let Some(message) = self.messages.next()? {
                return Ok(Some(message));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.messages.push(data),
                    Err(frame) => {
                        self.ended = true;
                        self.messages.finish()?;
                        if let Some(status) = frame.trailers_ref().and_then(Status::from_header_map)
                            && status.code() != tonic::Code::Ok
                        {
                            return Err(status);
                        }
                    }
                },
                Some(Err(status)) => return Err(status),
                None => {
                    self.ended = true;
                    self.messages.finish()?;
                }
            }
        }
    }
}

/// Where the decoder is between two pieces of input.
#[derive(Debug, Default)]
enum State {
    /// At a message's start.
    #[default]
    Between,
    /// Inside an output chunk's data: `left` bytes of descriptor `fd`, read at `at_ns`, to
    /// come.
    Data { fd: i32, at_ns: u64, left: usize },
    /// Gathering a message of `length` bytes to decode whole.
    Whole { length: usize },
}

/// The messages in a stream of data frames (pure: no I/O).
#[derive(Debug, Default)]
struct Messages {
    input: VecDeque<Bytes>,
    /// Bytes in `input`.
    buffered: usize,
    state: State,
}

impl Messages {
    fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.buffered += data.len();
            self.input.push_back(data);
        }
    }

    /// The next message the input holds, if it holds one (or a piece of output).
    fn next(&mut self) -> Result<Option<StreamResponse>, Status> {
        loop {
            match self.state {
                State::Data { fd, at_ns, left } => {
                    let Some(front) = self.input.front_mut() else { return Ok(None) };
                    let piece = front.split_to(left.min(front.len()));
                    if front.is_empty() {
                        self.input.pop_front();
                    }
                    self.buffered -= piece.len();
                    let left = left - piece.len();
                    self.state =
                        if left == 0 { State::Between } else { State::Data { fd, at_ns, left } };
                    let output = Output { fd, data: piece, at_ns };
                    return Ok(Some(StreamResponse { event: Some(Event::Output(output)) }));
                }
                State::Whole { length } => {
                    if self.buffered < length {
                        return Ok(None);
                    }
                    let whole = self.take(length);
                    self.state = State::Between;
                    let message = StreamResponse::decode(whole).map_err(|error| {
                        Status::internal(format!("cannot decode the stream: {error}"))
                    })?;
                    return Ok(Some(message));
                }
                State::Between => {
                    let head = self.peek(PREFIX + MAX_HEAD);
                    let Some((compressed, length)) = frame::parse(&head) else {
                        return Ok(None);
                    };
                    if compressed {
                        return Err(Status::internal("the daemon sent a compressed message"));
                    }
                    match output_head(&head[PREFIX..], length) {
                        Some(OutputHead { fd, at_ns, head_len, data_len }) => {
                            self.take(PREFIX + head_len);
                            self.state = State::Data { fd, at_ns, left: data_len };
                            if data_len == 0 {
                                self.state = State::Between;
                            }
                        }
                        // Not enough bytes yet to tell the shape, unless the message is
                        // shorter than a head.
                        None if head.len() < PREFIX + MAX_HEAD.min(length) => return Ok(None),
                        None if length > MAX_WHOLE => {
                            return Err(Status::internal(format!(
                                "the daemon sent a message of {length} bytes"
                            )));
                        }
                        None => {
                            self.take(PREFIX);
                            self.state = State::Whole { length };
                        }
                    }
                }
            }
        }
    }

    /// Checks that the input ended between two messages.
    fn finish(&self) -> Result<(), Status> {
        match (&self.state, self.buffered) {
            (State::Between, 0) => Ok(()),
            _ => Err(Status::internal("the stream ended inside a message")),
        }
    }

    /// Up to `most` bytes from the input's start, copied (only heads are peeked).
    fn peek(&self, most: usize) -> Vec<u8> {
        let mut head = Vec::with_capacity(most);
        for piece in &self.input {
            let room = most - head.len();
            head.extend_from_slice(&piece[..room.min(piece.len())]);
            if head.len() == most {
                break;
            }
        }
        head
    }

    /// The input's first `count` bytes (all there), as one buffer.
    fn take(&mut self, count: usize) -> Bytes {
        self.buffered -= count;
        if self.input.front().is_some_and(|front| front.len() >= count) {
            let front = self.input.front_mut().expect("checked");
            let taken = front.split_to(count);
            if front.is_empty() {
                self.input.pop_front();
            }
            return taken;
        }
        let mut taken = BytesMut::with_capacity(count);
        while taken.len() < count {
            let front = self.input.front_mut().expect("the input holds `count` bytes");
            let part = front.split_to((count - taken.len()).min(front.len()));
            taken.extend_from_slice(&part);
            if front.is_empty() {
                self.input.pop_front();
            }
        }
        taken.freeze()
    }
}

/// An output message's head, as the daemon writes it.
#[derive(Debug, PartialEq, Eq)]
struct OutputHead {
    fd: i32,
    at_ns: u64,
    /// Bytes of everything before the data.
    head_len: usize,
    data_len: usize,
}

/// If `head` starts a `length`-byte StreamResponse that holds one Output with its fd first,
/// then its time, and its data last, as the daemon writes it (fd and time may be absent,
/// at their defaults): that head.
fn output_head(mut head: &[u8], length: usize) -> Option<OutputHead> {
    let total = head.len();
    let inner = usize::try_from(field(0x0a, &mut head)?).ok()?;
    let outer_head = total - head.len();
    let inner_start = head.len();
    let fd =
        if head.first() == Some(&0x08) { i32::try_from(field(0x08, &mut head)?).ok()? } else { 0 };
    let at_ns = if head.first() == Some(&0x18) { field(0x18, &mut head)? } else { 0 };
    let data_len = usize::try_from(field(0x12, &mut head)?).ok()?;
    let inner_head = inner_start - head.len();
    (outer_head + inner == length && inner_head + data_len == inner).then_some(OutputHead {
        fd,
        at_ns,
        head_len: total - head.len(),
        data_len,
    })
}

/// The varint after a key byte `key` at `head`'s start, moving `head` past both.
fn field(key: u8, head: &mut &[u8]) -> Option<u64> {
    if head.first() != Some(&key) {
        return None;
    }
    head.advance(1);
    prost::encoding::decode_varint(head).ok()
}

#[cfg(test)]
mod tests {
    use rrocker_proto::v1::{Fd, TaskStatus};

    use super::*;

    fn framed(message: &StreamResponse) -> Vec<u8> {
        let mut whole = Vec::new();
        frame::encode(message, &mut whole);
        whole
    }

    fn output(fd: Fd, data: &[u8]) -> StreamResponse {
        let output = Output { fd: fd.into(), data: Bytes::copy_from_slice(data), at_ns: 0 };
        StreamResponse { event: Some(Event::Output(output)) }
    }

    /// Feeds `wire` in pieces of `step` bytes; returns the output bytes per fd and the
    /// other messages, in order.
    fn decode(wire: &[u8], step: usize) -> (Vec<(i32, Vec<u8>)>, Vec<StreamResponse>) {
        let mut messages = Messages::default();
        let (mut outputs, mut others): (Vec<(i32, Vec<u8>)>, _) = (Vec::new(), Vec::new());
        for piece in wire.chunks(step) {
            messages.push(Bytes::copy_from_slice(piece));
            while let Some(message) = messages.next().expect("valid") {
                match message.event {
                    Some(Event::Output(output)) => match outputs.last_mut() {
                        Some((fd, data)) if *fd == output.fd => {
                            data.extend_from_slice(&output.data)
                        }
                        _ => outputs.push((output.fd, output.data.to_vec())),
                    },
                    _ => others.push(message),
                }
            }
        }
        messages.finish().expect("ended between messages");
        (outputs, others)
    }

    #[test]
    fn every_message_comes_through_whatever_the_frames_cut() {
        let status = StreamResponse { event: Some(Event::Status(TaskStatus::default())) };
        let big = vec![7u8; 70_000];
        let messages = [
            output(Fd::Stdout, b"hello\n"),
            output(Fd::Stderr, &big),
            output(Fd::Stdout, b"x"),
            output(Fd::Stdout, b""),
            status.clone(),
        ];
        let wire: Vec<u8> = messages.iter().flat_map(framed).collect();
        for step in [1, 2, 5, 7, 23, 1000, 16_384, wire.len()] {
            let (outputs, others) = decode(&wire, step);
            let expected = vec![
                (i32::from(Fd::Stdout), b"hello\n".to_vec()),
                (i32::from(Fd::Stderr), big.clone()),
                (i32::from(Fd::Stdout), b"x".to_vec()),
            ];
            assert_eq!(outputs, expected, "step {step}");
            assert_eq!(others, std::slice::from_ref(&status), "step {step}");
        }
    }

    #[test]
    fn a_message_of_another_shape_is_decoded_whole() {
        // The data field before the fd: valid protobuf, not the daemon's order.
        let mut inner = vec![0x12, 3];
        inner.extend_from_slice(b"abc");
        inner.extend_from_slice(&[0x08, 2]);
        let mut message = vec![0x0a, u8::try_from(inner.len()).expect("short")];
        message.extend_from_slice(&inner);
        let mut wire = vec![0];
        wire.extend_from_slice(&u32::try_from(message.len()).expect("short").to_be_bytes());
        wire.extend_from_slice(&message);
        for step in [1, 3, wire.len()] {
            let (outputs, others) = decode(&wire, step);
            assert_eq!(outputs, [(i32::from(Fd::Stderr), b"abc".to_vec())], "step {step}");
            assert!(others.is_empty());
        }
    }

    #[test]
    fn the_daemons_order_with_a_time_is_read_in_place_and_prosts_whole() {
        let at_ns: u64 = 1_764_669_600_123_456_789;
        let mut time = vec![0x18];
        prost::encoding::encode_varint(at_ns, &mut time);
        // The daemon's order: fd, time, data (framed_stream's output_head).
        let mut inner = vec![0x08, 2];
        inner.extend_from_slice(&time);
        inner.extend_from_slice(&[0x12, 3]);
        inner.extend_from_slice(b"abc");
        let mut message = vec![0x0a, u8::try_from(inner.len()).expect("short")];
        message.extend_from_slice(&inner);
        let mut wire = vec![0];
        wire.extend_from_slice(&u32::try_from(message.len()).expect("short").to_be_bytes());
        wire.extend_from_slice(&message);
        let head = output_head(&wire[PREFIX..], message.len()).expect("the daemon's shape");
        assert_eq!((head.fd, head.at_ns, head.data_len), (2, at_ns, 3));
        // prost's order (fd, data, time) is decoded whole, to the same.
        let output = Output { fd: 2, data: Bytes::from_static(b"abc"), at_ns };
        let prosts = framed(&StreamResponse { event: Some(Event::Output(output.clone())) });
        for wire in [wire, prosts] {
            for step in [1, 4, wire.len()] {
                let mut messages = Messages::default();
                let mut got = Vec::new();
                for piece in wire.chunks(step) {
                    messages.push(Bytes::copy_from_slice(piece));
                    while let Some(message) = messages.next().expect("valid") {
                        let Some(Event::Output(piece)) = message.event else { panic!("output") };
                        assert_eq!((piece.fd, piece.at_ns), (2, at_ns), "step {step}");
                        got.extend_from_slice(&piece.data);
                    }
                }
                assert_eq!(got, b"abc", "step {step}");
            }
        }
    }

    #[test]
    fn a_stream_cut_inside_a_message_or_compressed_is_an_error() {
        let wire = framed(&output(Fd::Stdout, b"hello"));
        let mut cut = Messages::default();
        cut.push(Bytes::copy_from_slice(&wire[..wire.len() - 1]));
        while cut.next().expect("valid so far").is_some() {}
        assert!(cut.finish().is_err());
        let mut compressed = Messages::default();
        compressed.push(Bytes::from_static(&[1, 0, 0, 0, 0]));
        assert!(compressed.next().is_err());
    }
}
