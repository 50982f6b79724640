//! Server-sent events as a client reads them, for tests and benchmarks: frames (`event:` and
//! `data:` lines up to a blank line) out of a byte stream that may split them anywhere.

use futures_util::{Stream, StreamExt};

/// One event: its name (`message` when none was given) and its data lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub event: String,
    pub data: String,
}

/// The frames of an SSE byte stream, in order.
pub struct Frames<S> {
    bytes: S,
    buffer: String,
}

impl<S, B, E> Frames<S>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    pub fn new(bytes: S) -> Self {
        Frames {
            bytes,
            buffer: String::new(),
        }
    }

    /// The next frame; `None` once the stream ended or failed.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..end + 2).collect();
                return Some(parse(&raw));
            }
            let chunk = self.bytes.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
    }

    /// Reads up to and including the first frame named `event`; false when the stream ended first.
    pub async fn until(&mut self, event: &str) -> bool {
        while let Some(frame) = self.next().await {
            if frame.event == event {
                return true;
            }
        }
        false
    }
}

fn parse(raw: &str) -> Frame {
    let mut event = String::from("message");
    let mut data: Vec<&str> = Vec::new();
    for line in raw.lines() {
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_string();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    Frame {
        event,
        data: data.join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Frame, Frames};

    #[tokio::test]
    async fn frames_split_anywhere_come_out_whole_and_in_order() {
        let chunks: Vec<Result<&[u8], ()>> = vec![
            Ok(b"event: connected\ndata: {}\n"),
            Ok(b"\nid: 7\nevent: task:upd"),
            Ok(b"ated\ndata: {\"a\":1}\n\ndata: one\ndata: two\n\n"),
        ];
        let mut frames = Frames::new(futures_util::stream::iter(chunks));
        assert!(frames.until("connected").await);
        assert_eq!(
            frames.next().await,
            Some(Frame {
                event: "task:updated".into(),
                data: "{\"a\":1}".into()
            })
        );
        assert_eq!(
            frames.next().await,
            Some(Frame {
                event: "message".into(),
                data: "one\ntwo".into()
            })
        );
        assert_eq!(frames.next().await, None);
        assert!(!frames.until("connected").await);
    }
}
