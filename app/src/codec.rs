//! The server functions' answer encoding: JSON, decoded from text exactly as
//! a resource decodes its hydration data (`serde_json::from_str`). With
//! Leptos' own `JsonEncoding` (`from_slice`) every answer type's decoder was
//! compiled into the wasm twice, once per reader; this keeps one.

use leptos::server_fn::{codec::Post, Bytes, ContentType, Decodes, Encodes, Format, FormatType};
use serde::{de::DeserializeOwned, Serialize};

/// JSON in the body of a `POST` answer, decoded from text.
pub type Json = Post<TextJson>;

/// JSON whose decoder reads a `&str` (see the module's note).
pub struct TextJson;

impl ContentType for TextJson {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for TextJson {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for TextJson {
    type Error = serde_json::Error;

    fn encode(output: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(output).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for TextJson {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        // Not `from_slice` for bytes that are not UTF-8: that would bring
        // the second decoder back for every `T`.
        let text =
            std::str::from_utf8(&bytes).map_err(<serde_json::Error as serde::de::Error>::custom)?;
        serde_json::from_str(text)
    }
}
