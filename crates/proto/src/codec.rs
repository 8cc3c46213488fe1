//! The wire encoding, kept behind this one module so it can be swapped.
//!
//! Frames: a 4-byte big-endian length, then that many bytes ([`frame_codec`]).
//! Payloads: bincode 1.3 with a size limit equal to the frame cap, so a hostile length
//! inside a payload (a `Vec` claiming a billion elements) is an error, never an
//! allocation. bincode 1.3 is what its authors call complete; see the foundation issue.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use crate::MAX_FRAME_LEN;

/// A payload that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a valid message of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message would exceed [`MAX_FRAME_LEN`].
    #[error("message larger than the {MAX_FRAME_LEN}-byte frame limit")]
    TooLarge,
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(MAX_FRAME_LEN as u64)
        .with_little_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

/// The length-delimited frame codec both sides use, with the hard size cap.
pub fn frame_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

/// Encodes one message into a frame payload.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    options().serialize(message).map_err(|err| match *err {
        bincode::ErrorKind::SizeLimit => CodecError::TooLarge,
        other => CodecError::Malformed(other.to_string()),
    })
}

/// Decodes one frame payload. Garbage gives an error, never a panic, and never an
/// allocation beyond the frame cap.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    options()
        .deserialize(payload)
        .map_err(|err| CodecError::Malformed(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientFrame, Hello, Request, ServerFrame};
    use bytes::BytesMut;
    use proptest::prelude::*;
    use tokio_util::codec::{Decoder, Encoder};

    #[test]
    fn request_round_trips() {
        let frame = ClientFrame::Request(Request::AuditList {
            since_unix_ms: Some(17),
            limit: 5,
        });
        let bytes = encode(&frame).unwrap();
        let back: ClientFrame = decode(&bytes).unwrap();
        assert_eq!(format!("{frame:?}"), format!("{back:?}"));
    }

    #[test]
    fn hello_encoding_is_stable_across_versions() {
        // The handshake must stay readable by every future version: variant 0, then
        // the protocol number. Changing this breaks the "wrong version" message.
        let hello = ClientFrame::Hello(Hello {
            protocol: 7,
            client: String::new(),
        });
        assert_eq!(encode(&hello).unwrap(), vec![0, 7, 0]);
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_allocating() {
        let mut codec = frame_codec();
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3][..]);
        assert!(codec.decode(&mut buf).is_err());
    }

    #[test]
    fn huge_vec_length_inside_payload_is_an_error() {
        // ServerFrame::Response(Response::Ok(Reply::AuditEntries(<2^60 entries>))):
        // tags 2, 1, 1, then a varint length marker 0xff and eight length bytes.
        let payload = [2u8, 1, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x10];
        assert!(decode::<ServerFrame>(&payload).is_err());
    }

    proptest! {
        #[test]
        fn frame_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut codec = frame_codec();
            let mut buf = BytesMut::from(&bytes[..]);
            // Drain whatever frames the bytes happen to hold; errors are fine.
            while let Ok(Some(frame)) = codec.decode(&mut buf) {
                prop_assert!(frame.len() <= MAX_FRAME_LEN);
            }
        }

        #[test]
        fn request_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<ClientFrame>(&bytes);
            let _ = decode::<ServerFrame>(&bytes);
        }

        /// A frame carries its payload unchanged, and a payload whose first byte is no
        /// `ClientFrame` variant (there are two) is refused as malformed.
        #[test]
        fn framed_garbage_decodes_to_errors(
            tag in 2u8..251,
            rest in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let mut payload = vec![tag];
            payload.extend(rest);
            let mut codec = frame_codec();
            let mut out = BytesMut::new();
            codec.encode(bytes::Bytes::from(payload.clone()), &mut out).unwrap();
            let frame = codec.decode(&mut out).unwrap().unwrap();
            prop_assert_eq!(&frame[..], &payload[..]);
            prop_assert!(out.is_empty(), "one frame in, one frame out");
            let decoded = decode::<ClientFrame>(&frame);
            prop_assert!(matches!(decoded, Err(CodecError::Malformed(_))), "{:?}", decoded);
        }

        /// A valid message followed by anything is refused, not read as the message.
        #[test]
        fn a_message_with_bytes_after_it_is_malformed(
            extra in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let mut payload = encode(&ClientFrame::Hello(Hello {
                protocol: 7,
                client: "drctl".to_owned(),
            }))
            .unwrap();
            payload.extend(extra);
            let decoded = decode::<ClientFrame>(&payload);
            prop_assert!(matches!(decoded, Err(CodecError::Malformed(_))), "{:?}", decoded);
        }
    }
}
