//! Writing lines to stdout: JSON objects tagged with `type`, payload rendering, and
//! remembering the first write error (a closed pipe ends output quietly).
//!
//! Lines are built in one reused buffer (no allocation per line) and written to stdout in
//! blocks of whole lines once it holds [`FLUSH_AT`] bytes.

use std::borrow::Cow;
use std::io::{self, Write};

use base64::Engine;
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::Payload;

/// Buffered bytes at which complete lines are written out (small enough to stay in cache).
const FLUSH_AT: usize = 128 << 10;

/// Buffered stdout that stops writing after the first error.
pub struct Out {
    w: io::Stdout,
    /// Complete lines not yet written, then the line being built.
    buf: Vec<u8>,
    /// The first write error, if any.
    pub error: Option<io::Error>,
}

impl Default for Out {
    fn default() -> Self {
        Out::new()
    }
}

impl Out {
    pub fn new() -> Out {
        Out {
            w: io::stdout(),
            buf: Vec::with_capacity(FLUSH_AT * 2),
            error: None,
        }
    }

    /// The buffer to append one line to (without its newline); finish with
    /// [`Out::end_line`].
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Ends the line appended to [`Out::buf`], writing out full blocks.
    pub fn end_line(&mut self) {
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.write_out();
        }
    }

    fn write_out(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.w.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    /// Writes one line.
    pub fn line(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
        self.end_line();
    }

    /// Writes `value` as one JSON line with `"type": ty` first.
    pub fn json<T: Serialize>(&mut self, ty: &str, value: &T) {
        #[derive(Serialize)]
        struct Tagged<'a, T> {
            #[serde(rename = "type")]
            ty: &'a str,
            #[serde(flatten)]
            inner: &'a T,
        }
        self.json_line(&Tagged { ty, inner: value });
    }

    /// Writes `value` as one JSON line as it is (it carries its own `type`).
    pub fn json_line<T: Serialize>(&mut self, value: &T) {
        let start = self.buf.len();
        if let Err(e) = serde_json::to_writer(&mut self.buf, value) {
            self.buf.truncate(start);
            let msg = Value::String(e.to_string());
            self.line(&format!("{{\"type\":\"error\",\"message\":{msg}}}"));
            return;
        }
        self.end_line();
    }

    /// Flushes; returns whether output failed other than by a closed pipe.
    pub fn finish(mut self) -> bool {
        self.write_out();
        if self.error.is_none() {
            if let Err(e) = self.w.flush() {
                self.error = Some(e);
            }
        }
        match &self.error {
            Some(e) if e.kind() == io::ErrorKind::BrokenPipe => false,
            Some(e) => {
                eprintln!("segvault: writing output: {e}");
                true
            }
            None => false,
        }
    }
}

/// Renders bytes per `--payload` (`None` for `Payload::None`).
pub fn payload(bytes: &[u8], mode: Payload) -> Option<String> {
    match mode {
        Payload::None => None,
        Payload::Utf8 => Some(String::from_utf8_lossy(bytes).into_owned()),
        Payload::Hex => Some(hex::encode(bytes)),
        Payload::Base64 => Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

/// A payload (`None`: null) as JSON per `--payload`, serialized without building a
/// `String` first for valid UTF-8.
pub struct JsonPayload<'a> {
    pub bytes: Option<&'a [u8]>,
    pub mode: Payload,
}

impl Serialize for JsonPayload<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.bytes {
            None => s.serialize_none(),
            Some(b) => match self.mode {
                Payload::Utf8 => s.serialize_str(&String::from_utf8_lossy(b)),
                Payload::None => s.serialize_none(),
                m => s.serialize_str(&payload(b, m).unwrap_or_default()),
            },
        }
    }
}

/// Appends the text form of a payload to `out`: `null`, or the bytes per `--payload`, with
/// control characters escaped for `utf8`.
pub fn push_payload_text(out: &mut Vec<u8>, bytes: Option<&[u8]>, mode: Payload) {
    let Some(b) = bytes else {
        out.extend_from_slice(b"null");
        return;
    };
    match mode {
        Payload::None => {}
        Payload::Utf8 => push_escaped(out, b),
        Payload::Hex => {
            let start = out.len();
            out.resize(start + 2 * b.len(), 0);
            // The slice is exactly twice the input: encode_to_slice cannot fail.
            let _ = hex::encode_to_slice(b, &mut out[start..]);
        }
        Payload::Base64 => {
            let engine = &base64::engine::general_purpose::STANDARD;
            let start = out.len();
            let len = base64::encoded_len(b.len(), true).unwrap_or(0);
            out.resize(start + len, 0);
            match engine.encode_slice(b, &mut out[start..]) {
                Ok(n) => out.truncate(start + n),
                Err(_) => {
                    out.truncate(start);
                    out.extend_from_slice(engine.encode(b).as_bytes());
                }
            }
        }
    }
}

/// Whether `str::escape_debug` changes `x`: anything but printable ASCII, the backslash
/// and the quotes. Non-short-circuit `|` so that a block of these compiles to SIMD
/// compares.
#[inline(always)]
fn escapes(x: u8) -> bool {
    (x.wrapping_sub(0x20) > 0x5e) | (x == b'\\') | (x == b'\'') | (x == b'"')
}

/// Whether `escape_debug` of `b` (read as UTF-8) is `b` itself. Scans 32 bytes at a time
/// without early exit inside a block, so the compiler vectorises it; `multiversion` also
/// compiles it for AVX2 and picks that at run time where the CPU has it.
#[multiversion::multiversion(targets("x86_64+avx2"))]
pub fn is_plain(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(32);
    for block in &mut blocks {
        if block.iter().fold(false, |any, &x| any | escapes(x)) {
            return false;
        }
    }
    !blocks.remainder().iter().any(|&x| escapes(x))
}

/// Appends `String::from_utf8_lossy(b).escape_debug()` to `out`; bytes that need no
/// escaping (the usual case) are copied in one go.
pub fn push_escaped(out: &mut Vec<u8>, b: &[u8]) {
    if is_plain(b) {
        out.extend_from_slice(b);
    } else {
        push_escaped_slow(out, b);
    }
}

#[cold]
fn push_escaped_slow(out: &mut Vec<u8>, b: &[u8]) {
    let s: Cow<'_, str> = String::from_utf8_lossy(b);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}", s.escape_debug());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payload_text(bytes: Option<&[u8]>, mode: Payload) -> String {
        let mut v = Vec::new();
        push_payload_text(&mut v, bytes, mode);
        String::from_utf8(v).expect("UTF-8")
    }

    fn slow(b: &[u8]) -> String {
        String::from_utf8_lossy(b).escape_debug().to_string()
    }

    fn fast(b: &[u8]) -> String {
        let mut v = b"prefix ".to_vec();
        push_escaped(&mut v, b);
        String::from_utf8(v).expect("UTF-8").split_off(7)
    }

    #[test]
    fn escaping_matches_escape_debug() {
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"plain ascii ~ text 0123456789".to_vec(),
            b"quote' dq\" back\\slash".to_vec(),
            b"tab\tnl\ncr\r nul\0 del\x7f esc\x1b".to_vec(),
            "caf\u{e9} \u{301}accent \u{200b}zw \u{1f600}"
                .as_bytes()
                .to_vec(),
            "\u{301}starts with a combining mark".as_bytes().to_vec(),
            vec![0xff, 0xfe, b'a', 0xc3],
            [b'A'; 100].iter().copied().chain([b'\n']).collect(),
            [b'A'; 64].to_vec(),
            [b'A'; 63].iter().copied().chain([0x80]).collect(),
        ];
        for c in &cases {
            assert_eq!(fast(c), slow(c), "{c:?}");
        }
        for x in 0..=255u8 {
            for len in [1usize, 31, 32, 33, 65] {
                let mut b = vec![b'x'; len];
                b[len - 1] = x;
                assert_eq!(fast(&b), slow(&b), "{b:?}");
                b[0] = x;
                assert_eq!(fast(&b), slow(&b), "{b:?}");
            }
        }
    }

    #[test]
    fn text_payload_modes() {
        assert_eq!(payload_text(None, Payload::Utf8), "null");
        assert_eq!(payload_text(Some(b"\x00\xffa"), Payload::Hex), "00ff61");
        assert_eq!(
            payload_text(Some(b"\x00\xffab"), Payload::Base64),
            "AP9hYg=="
        );
        assert_eq!(payload_text(Some(b""), Payload::Base64), "");
        assert_eq!(payload_text(Some(b"a\nb"), Payload::Utf8), "a\\nb");
        for n in 0..10 {
            let b: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            assert_eq!(
                payload_text(Some(&b), Payload::Base64),
                base64::engine::general_purpose::STANDARD.encode(&b)
            );
        }
    }

    proptest! {
        /// The printable-ASCII fast path and `escape_debug` agree on arbitrary bytes.
        #[test]
        fn fast_escaping_agrees_with_escape_debug(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(fast(&b), slow(&b));
        }

        #[test]
        fn fast_escaping_agrees_on_mostly_printable(
            b in proptest::collection::vec(prop_oneof![8 => 0x20u8..0x7f, 1 => any::<u8>()], 0..200)
        ) {
            prop_assert_eq!(fast(&b), slow(&b));
        }
    }
}
