//! The protobuf codec of every Reelay service: prost, with small initial buffers.
//!
//! tonic's default gives every call an 8 KiB encode buffer (and a decode buffer) that lives as long
//! as the call. A coordinator holding 10,000 idle `WatchJob` streams kept 80 MB in those buffers
//! alone; Reelay's messages are small, so the buffers start at 512 bytes and grow when a message
//! needs it (a download chunk).

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec as TonicCodec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial size of a call's encode and decode buffers.
const BUFFER_BYTES: usize = 512;
/// A stream yields to the transport once this much is encoded (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost encoding with small initial buffers; named by the generated code (`codec_path`).
#[derive(Debug, Clone, Copy)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

impl<T, U> TonicCodec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
