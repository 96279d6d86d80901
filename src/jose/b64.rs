//! TEMPORARY (replaced by the verification core's strict base64url).
use base64ct::{Base64UrlUnpadded, Encoding};
pub fn encode(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}
pub fn decode(text: &str) -> Result<Vec<u8>, crate::Error> {
    Base64UrlUnpadded::decode_vec(text).map_err(|_| crate::Error::Base64)
}
