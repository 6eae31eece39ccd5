//! Process output: a bounded per-process ring of output chunks addressed by byte offset (so
//! clients can replay and resume), a capped capture buffer for buffered exec, and the
//! binary-safe text/base64 encoding used in JSON events.

use std::collections::VecDeque;

use base64::Engine;
use bytes::Bytes;
use serde::Serialize;

/// Which output stream a chunk came from (a PTY's merged output counts as stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// One chunk of output at a position in the process's combined output.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Offset of the first byte, counting stdout and stderr bytes together from 0.
    pub offset: u64,
    pub stream: StreamKind,
    pub data: Bytes,
}

/// The last `capacity` bytes of a process's output (at least the newest chunk).
#[derive(Debug)]
pub struct OutputRing {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    capacity: usize,
    end: u64,
}

/// What a reader gets from [`OutputRing::read_from`].
#[derive(Debug, Default)]
pub struct RingRead {
    /// Bytes between the requested offset and the oldest retained byte that were evicted.
    pub dropped: Option<(u64, u64)>,
    pub chunks: Vec<Chunk>,
    /// Offset after the last returned byte.
    pub next: u64,
}

impl OutputRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            bytes: 0,
            capacity,
            end: 0,
        }
    }

    /// Offset after the newest byte (total bytes ever appended).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Offset of the oldest retained byte.
    pub fn start(&self) -> u64 {
        self.chunks.front().map_or(self.end, |c| c.offset)
    }

    /// Appends a chunk, evicting the oldest ones beyond capacity.
    pub fn push(&mut self, stream: StreamKind, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let len = data.len();
        self.chunks.push_back(Chunk {
            offset: self.end,
            stream,
            data,
        });
        self.end += len as u64;
        self.bytes += len;
        while self.bytes > self.capacity && self.chunks.len() > 1 {
            if let Some(old) = self.chunks.pop_front() {
                self.bytes -= old.data.len();
            }
        }
    }

    /// Returns up to about `max_bytes` of output from `offset` on.
    pub fn read_from(&self, offset: u64, max_bytes: usize) -> RingRead {
        let start = self.start();
        let mut read = RingRead {
            next: offset.max(start),
            ..RingRead::default()
        };
        if offset < start {
            read.dropped = Some((offset, start));
        }
        if read.next >= self.end {
            read.next = read.next.min(self.end);
            return read;
        }
        let first = self
            .chunks
            .partition_point(|c| c.offset + c.data.len() as u64 <= read.next);
        let mut taken = 0usize;
        for chunk in self.chunks.iter().skip(first) {
            let skip = usize::try_from(read.next - chunk.offset).unwrap_or(0);
            let data = chunk.data.slice(skip..);
            taken += data.len();
            read.next += data.len() as u64;
            read.chunks.push(Chunk {
                offset: chunk.offset + skip as u64,
                stream: chunk.stream,
                data,
            });
            if taken >= max_bytes {
                break;
            }
        }
        read
    }
}

/// Holds back an incomplete UTF-8 sequence at the end of a read so that a character is never
/// split across two events of the same stream.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    carry: Vec<u8>,
}

impl Utf8Carry {
    /// Returns the bytes to emit now: the previous carry plus `data`, minus a trailing
    /// incomplete sequence (kept for the next call).
    pub fn split(&mut self, data: &[u8]) -> Bytes {
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(data);
        let keep = incomplete_utf8_tail(&joined);
        if keep > 0 {
            self.carry = joined.split_off(joined.len() - keep);
        }
        Bytes::from(joined)
    }

    /// Whatever is still held back (at end of stream).
    pub fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.carry))
    }
}

/// Length of a trailing prefix of a multi-byte UTF-8 sequence that still misses bytes.
fn incomplete_utf8_tail(data: &[u8]) -> usize {
    for back in 1..=data.len().min(3) {
        let byte = data[data.len() - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte: look further back for the lead byte
        }
        let width = match byte {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        return if width > back { back } else { 0 };
    }
    0
}

/// Output captured for a buffered exec, capped at `limit` bytes (the rest is counted and dropped).
#[derive(Debug)]
pub struct Capture {
    pub data: Vec<u8>,
    pub limit: usize,
    pub truncated: bool,
}

impl Capture {
    pub fn new(limit: usize) -> Self {
        Self {
            data: Vec::new(),
            limit,
            truncated: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.data.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Output bytes as they appear in JSON: text when valid UTF-8, base64 otherwise.
#[derive(Debug, Serialize)]
pub struct EncodedData {
    pub data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
}

impl EncodedData {
    pub fn new(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self {
                data: text.to_owned(),
                encoding: None,
            },
            Err(_) => Self {
                data: base64::engine::general_purpose::STANDARD.encode(bytes),
                encoding: Some("base64"),
            },
        }
    }
}

/// Decodes client-sent data: plain text, or base64 when `encoding` is `"base64"`.
pub fn decode_data(data: &str, encoding: Option<&str>) -> Result<Vec<u8>, String> {
    match encoding {
        None | Some("utf-8" | "utf8" | "text") => Ok(data.as_bytes().to_vec()),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|err| format!("invalid base64 data: {err}")),
        Some(other) => Err(format!(
            "unknown encoding {other:?}: use \"base64\" or omit it for text"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_evicts_oldest_and_reports_the_gap() {
        let mut ring = OutputRing::new(10);
        ring.push(StreamKind::Stdout, Bytes::from_static(b"hello"));
        ring.push(StreamKind::Stderr, Bytes::from_static(b"world"));
        ring.push(StreamKind::Stdout, Bytes::from_static(b"again"));
        assert_eq!(ring.end(), 15);
        assert_eq!(ring.start(), 5);
        let read = ring.read_from(0, 1 << 20);
        assert_eq!(read.dropped, Some((0, 5)));
        assert_eq!(read.chunks.len(), 2);
        assert_eq!(read.chunks[0].stream, StreamKind::Stderr);
        assert_eq!(read.next, 15);
    }

    #[test]
    fn ring_resumes_mid_chunk() {
        let mut ring = OutputRing::new(100);
        ring.push(StreamKind::Stdout, Bytes::from_static(b"abcdef"));
        let read = ring.read_from(2, 1 << 20);
        assert!(read.dropped.is_none());
        assert_eq!(&read.chunks[0].data[..], b"cdef");
        assert_eq!(read.chunks[0].offset, 2);
        assert!(ring.read_from(6, 10).chunks.is_empty());
    }

    #[test]
    fn utf8_sequences_are_never_split() {
        let text = "añ€😀".as_bytes();
        for cut in 0..text.len() {
            let mut carry = Utf8Carry::default();
            let first = carry.split(&text[..cut]);
            let second = carry.split(&text[cut..]);
            assert!(std::str::from_utf8(&first).is_ok(), "cut at {cut}");
            assert!(std::str::from_utf8(&second).is_ok(), "cut at {cut}");
            assert!(carry.finish().is_empty());
        }
    }

    #[test]
    fn binary_output_is_base64_encoded() {
        let encoded = EncodedData::new(&[0xff, 0x00, 0x41]);
        assert_eq!(encoded.encoding, Some("base64"));
        assert_eq!(
            decode_data(&encoded.data, encoded.encoding).unwrap(),
            vec![0xff, 0x00, 0x41]
        );
        assert_eq!(EncodedData::new(b"plain").encoding, None);
    }

    #[test]
    fn capture_truncates_and_flags() {
        let mut capture = Capture::new(4);
        capture.push(b"abc");
        capture.push(b"def");
        assert_eq!(capture.data, b"abcd");
        assert!(capture.truncated);
    }
}
