//! The codec every generated client and server uses (`codec_path` in `build.rs`): prost's,
//! except that a body which does not decode as the method's message is INVALID_ARGUMENT,
//! with one stable message, instead of prost's INTERNAL "failed to decode Protobuf
//! message". Garbage from a client is bad input, not a fault of ours, and the decoder's
//! detail (field paths, wire types) is no business of the client's: it goes to the debug
//! log.
//!
//! The same decoder reads replies on the client side, where a reply that does not decode
//! reads INVALID_ARGUMENT too; our clients treat any error status of a peer alike (an
//! unknown answer), so the code's meaning there does not matter.
//!
//! Only our own services use it: the standard health and reflection services come with
//! their own generated code (prost's codec).

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// What a client is told when its request body is not a valid protobuf encoding of the
/// method's request message.
pub const UNDECODABLE_MSG: &str = "the request body is not a valid protobuf encoding of the \
     method's request message: check the method and the message type, and that strings are UTF-8";

/// [`ProstCodec`], decoding with [`ProtobufDecoder`].
#[derive(Debug, Clone)]
pub struct ProtobufCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for ProtobufCodec<T, U> {
    fn default() -> Self {
        ProtobufCodec {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for ProtobufCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtobufDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtobufDecoder {
            inner: self.inner.decoder(),
        }
    }
}

/// [`ProstDecoder`], with its errors (it has only decode errors) as INVALID_ARGUMENT
/// [`UNDECODABLE_MSG`].
#[derive(Debug, Clone)]
pub struct ProtobufDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: prost::Message + Default> Decoder for ProtobufDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.inner.decode(src).map_err(|status| {
            // prost's text names message types and fields, never the bytes received.
            tracing::debug!(detail = ?status.message(), "undecodable message");
            Status::invalid_argument(UNDECODABLE_MSG)
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}
