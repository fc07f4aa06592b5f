//! Test support: runs code under the gateway's JSON log layer ([`log_lines`]) writing through a
//! real [`writer`] into memory, and hands back the lines it wrote.

use super::{log_lines, writer};
use crate::config::LogFormat;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;

/// Bytes written by the log writer's thread, shared with the test.
#[derive(Clone, Default)]
struct Memory(Arc<Mutex<Vec<u8>>>);

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines `body` logged, as written.
pub fn json_lines(body: impl FnOnce()) -> Vec<String> {
    let memory = Memory::default();
    let (writer, flush) = writer::spawn(memory.clone(), writer::BUFFER_BYTES).unwrap();
    let layer = log_lines(LogFormat::Json, writer);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
    drop(flush);
    let text = String::from_utf8(memory.0.lock().unwrap().clone()).unwrap();
    text.lines().map(str::to_owned).collect()
}
