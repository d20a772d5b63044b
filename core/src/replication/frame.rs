//! Frames: how messages travel on a byte stream.
//!
//! A frame is a 6-byte header (protocol version, flags, payload length as big-endian `u32`)
//! followed by the payload. A message is postcard-encoded and split into payloads of at most
//! the configured frame size; every frame but the last sets [`FLAG_MORE`]. The receiver
//! reassembles the payloads, bounded in total, and decodes the message only when it is
//! complete. Nothing here panics on any input, and lengths are checked before any allocation.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::replication::message::Message;

/// Protocol version carried in every frame.
pub const PROTOCOL_VERSION: u8 = 2;
/// Flag bit: more frames of the same message follow.
pub const FLAG_MORE: u8 = 0b0000_0001;
/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 6;

/// An error from decoding or encoding frames and messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame's version is not [`PROTOCOL_VERSION`].
    #[error("unsupported replication protocol version {found}, expected {PROTOCOL_VERSION}")]
    Version {
        /// The version found.
        found: u8,
    },
    /// The frame sets flag bits this version does not define.
    #[error("invalid frame flags {flags:#04x}")]
    Flags {
        /// The flags found.
        flags: u8,
    },
    /// The payload length is over the frame limit.
    #[error("frame payload of {length} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Declared length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The reassembled message is over the message limit.
    #[error("message of at least {length} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Size reached.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The message bytes do not decode.
    #[error("invalid replication message: {0}")]
    Decode(String),
    /// The message does not encode.
    #[error("cannot encode replication message: {0}")]
    Encode(String),
}

/// Limits on frames and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Maximum payload of one frame.
    pub max_frame_payload: usize,
    /// Maximum size of one reassembled message.
    pub max_message_size: usize,
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Whether more frames of the same message follow.
    pub more: bool,
    /// The payload.
    pub payload: &'a [u8],
}

/// Encodes `message` as one or more frames of at most `limits.max_frame_payload` payload bytes.
pub fn encode_message(message: &Message, limits: FrameLimits) -> Result<Vec<Vec<u8>>, FrameError> {
    encode_payload(message, limits)
}

/// Encodes any postcard message, such as a forwarding message, as [`encode_message`] does.
pub fn encode_payload<T: Serialize>(
    message: &T,
    limits: FrameLimits,
) -> Result<Vec<Vec<u8>>, FrameError> {
    let bytes =
        postcard::to_allocvec(message).map_err(|error| FrameError::Encode(error.to_string()))?;
    if bytes.len() > limits.max_message_size {
        return Err(FrameError::MessageTooLarge {
            length: bytes.len(),
            max: limits.max_message_size,
        });
    }
    let chunk = limits.max_frame_payload.clamp(1, u32::MAX as usize);
    let count = bytes.len().div_ceil(chunk).max(1);
    let mut frames = Vec::with_capacity(count);
    for number in 0..count {
        let start = number * chunk;
        let end = (start + chunk).min(bytes.len());
        frames.push(encode_frame(number + 1 < count, &bytes[start..end]));
    }
    Ok(frames)
}

fn encode_frame(more: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.push(PROTOCOL_VERSION);
    frame.push(if more { FLAG_MORE } else { 0 });
    let length = u32::try_from(payload.len()).expect("payloads are clamped to u32::MAX bytes");
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Decodes the frame at the start of `bytes`. Returns `Ok(None)` when more bytes are needed,
/// or the frame and the number of bytes it used.
pub fn decode_frame(
    bytes: &[u8],
    max_frame_payload: usize,
) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[0] != PROTOCOL_VERSION {
        return Err(FrameError::Version { found: header[0] });
    }
    if header[1] & !FLAG_MORE != 0 {
        return Err(FrameError::Flags { flags: header[1] });
    }
    let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if length > max_frame_payload {
        return Err(FrameError::FrameTooLarge {
            length,
            max: max_frame_payload,
        });
    }
    let Some(payload) = bytes.get(HEADER_LEN..HEADER_LEN + length) else {
        return Ok(None);
    };
    let frame = Frame {
        more: header[1] & FLAG_MORE != 0,
        payload,
    };
    Ok(Some((frame, HEADER_LEN + length)))
}

/// Decodes a stream of frames into messages.
///
/// Push bytes as they arrive with [`FrameDecoder::push`], then call
/// [`FrameDecoder::poll_message`] until it returns `Ok(None)`. After an error the stream is
/// unusable and the connection must close.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: FrameLimits,
    buffer: Vec<u8>,
    message: Vec<u8>,
}

impl FrameDecoder {
    /// Creates a decoder with empty buffers.
    pub fn new(limits: FrameLimits) -> FrameDecoder {
        FrameDecoder {
            limits,
            buffer: Vec::new(),
            message: Vec::new(),
        }
    }

    /// Appends received bytes. Poll after every push, so the buffer holds at most one partial
    /// frame beyond the bytes of the last push.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Returns the next complete message, if the buffered bytes hold one.
    #[must_use = "a decoded message must be handled"]
    pub fn poll_message(&mut self) -> Result<Option<Message>, FrameError> {
        self.poll_payload()
    }

    /// Returns the next complete message of type `T`, for protocols other than replication
    /// that share the frame layout, such as forwarding.
    #[must_use = "a decoded message must be handled"]
    pub fn poll_payload<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            let Some((frame, used)) = decode_frame(&self.buffer, self.limits.max_frame_payload)?
            else {
                return Ok(None);
            };
            let total = self.message.len() + frame.payload.len();
            if total > self.limits.max_message_size {
                return Err(FrameError::MessageTooLarge {
                    length: total,
                    max: self.limits.max_message_size,
                });
            }
            let more = frame.more;
            self.message.extend_from_slice(frame.payload);
            self.buffer.drain(..used);
            if !more {
                let bytes = std::mem::take(&mut self.message);
                return postcard::from_bytes(&bytes)
                    .map(Some)
                    .map_err(|error| FrameError::Decode(error.to_string()));
            }
        }
    }

    /// Returns whether a partial frame or message is buffered.
    pub fn has_partial(&self) -> bool {
        !self.buffer.is_empty() || !self.message.is_empty()
    }
}

/// Decodes one complete message from its postcard bytes.
pub fn decode_message(bytes: &[u8]) -> Result<Message, FrameError> {
    postcard::from_bytes(bytes).map_err(|error| FrameError::Decode(error.to_string()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::replication::message::ErrorCode;
    use crate::replication::position::{Epoch, Position};
    use crate::replication::wal::{Entry, Op};

    const LIMITS: FrameLimits = FrameLimits {
        max_frame_payload: 64,
        max_message_size: 1 << 20,
    };

    fn decode_all(frames: &[Vec<u8>], limits: FrameLimits) -> Result<Vec<Message>, FrameError> {
        let mut decoder = FrameDecoder::new(limits);
        let mut messages = Vec::new();
        for frame in frames {
            decoder.push(frame);
            while let Some(message) = decoder.poll_message()? {
                messages.push(message);
            }
        }
        Ok(messages)
    }

    fn batch(value_size: usize) -> Message {
        let epoch = Epoch::new(1, "cluster");
        let op = Op::Put {
            key: "logical/k".into(),
            value: vec![7; value_size],
        };
        let entry = Entry::next(&Position::genesis(epoch.clone()), epoch, vec![op]);
        Message::WalBatch {
            entries: vec![entry],
        }
    }

    #[test]
    fn large_message_travels_in_chunks() {
        let message = batch(1000);
        let frames = encode_message(&message, LIMITS).unwrap();
        assert!(frames.len() > 10);
        assert_eq!(decode_all(&frames, LIMITS).unwrap(), vec![message]);
    }

    #[test]
    fn oversized_frame_length_is_rejected_before_payload() {
        let mut frame = vec![PROTOCOL_VERSION, 0];
        frame.extend_from_slice(&u32::MAX.to_be_bytes());
        let error = decode_frame(&frame, 64).unwrap_err();
        assert!(matches!(error, FrameError::FrameTooLarge { .. }));
    }

    #[test]
    fn reassembly_stops_at_message_limit() {
        let limits = FrameLimits {
            max_frame_payload: 64,
            max_message_size: 200,
        };
        let frames = encode_message(&batch(1000), LIMITS).unwrap();
        let error = decode_all(&frames, limits).unwrap_err();
        assert!(matches!(error, FrameError::MessageTooLarge { .. }));
    }

    #[test]
    fn wrong_version_is_rejected() {
        let error = decode_frame(&[9, 0, 0, 0, 0, 0], 64).unwrap_err();
        assert_eq!(error, FrameError::Version { found: 9 });
    }

    #[test]
    fn frame_split_across_pushes_decodes() {
        let message = Message::Ack { applied: 42 };
        let frames = encode_message(&message, LIMITS).unwrap();
        let bytes = frames.concat();
        let mut decoder = FrameDecoder::new(LIMITS);
        decoder.push(&bytes[..3]);
        assert_eq!(decoder.poll_message().unwrap(), None);
        decoder.push(&bytes[3..]);
        assert_eq!(decoder.poll_message().unwrap(), Some(message));
    }

    fn position_strategy() -> impl Strategy<Value = Position> {
        (any::<u64>(), "[a-z]{0,8}", any::<u64>(), any::<[u8; 32]>()).prop_map(
            |(number, cluster, index, hash)| Position {
                epoch: Epoch::new(number, cluster),
                index,
                hash,
            },
        )
    }

    fn message_strategy() -> impl Strategy<Value = Message> {
        prop_oneof![
            any::<u64>().prop_map(|applied| Message::Ack { applied }),
            (any::<u64>(), prop::collection::vec(any::<String>(), 0..4))
                .prop_map(|(sync, keys)| Message::FetchKeys { sync, keys }),
            (0usize..300).prop_map(batch),
            ".*".prop_map(|message| Message::Error {
                code: ErrorCode::Protocol,
                message
            }),
            (any::<u64>(), prop::collection::vec(any::<u8>(), 0..8))
                .prop_map(|(sync, pages)| Message::MerklePagesRequest { sync, pages }),
            (".*", ".*", position_strategy(), any::<[u8; 32]>()).prop_map(
                |(cluster_id, secondary_id, position, root)| Message::Hello {
                    cluster_id,
                    secondary_id,
                    position,
                    root,
                }
            ),
            (position_strategy(), any::<[u8; 32]>())
                .prop_map(|(head, root)| Message::Heartbeat { head, root }),
            (
                any::<u64>(),
                position_strategy(),
                prop::collection::vec(any::<[u8; 32]>(), 0..4)
            )
                .prop_map(|(sync, position, pages)| Message::SyncStart {
                    sync,
                    position,
                    root: [1; 32],
                    pages,
                }),
            (
                any::<u64>(),
                prop::collection::vec(
                    (
                        ".*",
                        prop::option::of(prop::collection::vec(any::<u8>(), 0..40))
                    ),
                    0..4
                )
            )
                .prop_map(|(sync, values)| Message::KeyValues { sync, values }),
            (
                any::<u64>(),
                prop::collection::vec(
                    (
                        any::<u16>(),
                        prop::collection::vec((".*", any::<[u8; 32]>()), 0..3),
                        prop::collection::vec(any::<u32>(), 0..3)
                    ),
                    0..3
                )
            )
                .prop_map(|(sync, buckets)| Message::BucketResponse {
                    sync,
                    buckets: buckets
                        .into_iter()
                        .map(|(bucket, missing, unmatched)| {
                            (
                                bucket,
                                crate::replication::message::BucketDelta { missing, unmatched },
                            )
                        })
                        .collect(),
                }),
            (
                any::<u64>(),
                prop::collection::vec(
                    (any::<u16>(), prop::collection::vec(any::<[u8; 8]>(), 0..3)),
                    0..3
                )
            )
                .prop_map(|(sync, buckets)| Message::BucketRequest { sync, buckets }),
            ".*".prop_map(|reason| Message::Goodbye { reason }),
            any::<u8>()
                .prop_map(|seed| Message::KeyOffer(crate::replication::keys::sample_offer(seed))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn decode_inverts_encode(message in message_strategy(), frame in 1usize..100) {
            let limits = FrameLimits { max_frame_payload: frame, max_message_size: 1 << 20 };
            let frames = encode_message(&message, limits).unwrap();
            prop_assert_eq!(decode_all(&frames, limits).unwrap(), vec![message]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(std::slice::from_ref(&bytes), LIMITS);
            let _ = decode_message(&bytes);
        }
    }
}
