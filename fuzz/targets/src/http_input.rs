//! The input of the `http_request` target: a raw HTTP/1.1 request, read leniently, so that real
//! requests serve as seeds and libFuzzer's text mutations stay meaningful.

use std::net::{Ipv4Addr, SocketAddr};

use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// The arguments of `map_request`.
pub(crate) struct HttpInput {
    pub(crate) method: Method,
    pub(crate) path_and_query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) remote_addr: Option<SocketAddr>,
}

impl HttpInput {
    /// Reads `METHOD TARGET VERSION`, then `Name: value` lines up to an empty line, then the
    /// body. A method or header that `http` rejects is replaced or skipped, never an error.
    pub(crate) fn parse(data: &[u8]) -> HttpInput {
        let (head, body) = match find(data, b"\r\n\r\n") {
            Some(at) => (&data[..at], &data[at + 4..]),
            None => (data, &[][..]),
        };
        let mut lines = head.split(|&byte| byte == b'\n');
        let request_line = lines.next().unwrap_or_default();
        let mut words = request_line.trim_ascii().splitn(3, |&byte| byte == b' ');
        let method = Method::from_bytes(words.next().unwrap_or_default()).unwrap_or(Method::GET);
        let target = String::from_utf8_lossy(words.next().unwrap_or_default()).into_owned();
        let mut headers = HeaderMap::new();
        for line in lines {
            let Some(colon) = line.iter().position(|&byte| byte == b':') else {
                continue;
            };
            let name = HeaderName::from_bytes(line[..colon].trim_ascii());
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
            if let (Ok(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
        HttpInput {
            method,
            path_and_query: target,
            headers,
            body: body.to_vec(),
            remote_addr: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 50_000))),
        }
    }
}

impl<'a> Arbitrary<'a> for HttpInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<HttpInput> {
        let length = u.arbitrary_len::<u8>()?;
        Ok(HttpInput::parse(u.bytes(length)?))
    }

    fn arbitrary_take_rest(u: Unstructured<'a>) -> arbitrary::Result<HttpInput> {
        Ok(HttpInput::parse(u.take_rest()))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
