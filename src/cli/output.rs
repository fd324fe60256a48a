//! Writing lines to stdout: JSON objects tagged with `type`, payload rendering, and
//! remembering the first write error (a closed pipe ends output quietly).

use std::io::{self, BufWriter, Write};

use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use super::Payload;

/// Buffered stdout that stops writing after the first error.
pub struct Out {
    w: BufWriter<io::Stdout>,
    /// The first write error, if any.
    pub error: Option<io::Error>,
}

impl Out {
    pub fn new() -> Out {
        Out {
            w: BufWriter::new(io::stdout()),
            error: None,
        }
    }

    /// Writes one line.
    pub fn line(&mut self, s: &str) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self
            .w
            .write_all(s.as_bytes())
            .and_then(|_| self.w.write_all(b"\n"))
        {
            self.error = Some(e);
        }
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
        match serde_json::to_string(&Tagged { ty, inner: value }) {
            Ok(s) => self.line(&s),
            Err(e) => self.line(&format!(
                "{{\"type\":\"error\",\"message\":{}}}",
                Value::String(e.to_string())
            )),
        }
    }

    /// Flushes; returns whether output failed other than by a closed pipe.
    pub fn finish(mut self) -> bool {
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
        Payload::Hex => Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        Payload::Base64 => Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

/// Text for a terminal: payload with control characters escaped.
pub fn payload_text(bytes: Option<&[u8]>, mode: Payload) -> String {
    match bytes {
        None => "null".into(),
        Some(b) => match payload(b, mode) {
            None => String::new(),
            Some(s) if mode == Payload::Utf8 => s.escape_debug().to_string(),
            Some(s) => s,
        },
    }
}
