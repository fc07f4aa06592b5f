//! JSON text for log lines, appended to a byte buffer: strings escaped only when they hold a
//! character that needs it (quote, backslash, control), which log values almost never do — the
//! check runs over 16 bytes at a time, where escaping (`serde_json`'s) goes byte by byte — and
//! every other value serialised by `serde_json`.

use serde::Serialize;

/// Appends `text` as a JSON string.
pub fn push_str(out: &mut Vec<u8>, text: &str) {
    if needs_escaping(text.as_bytes()) {
        push_value(out, text);
    } else {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// Appends `value`, serialised by `serde_json` (a non-finite number as `null`).
pub fn push_value(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    // Strings, numbers and bytes serialise into a `Vec` without fail. (A `Debug` value whose
    // own formatting fails makes `serde_json` panic, as `format!` does in tracing-subscriber's
    // formatter: the standard library's formatting never fails.)
    let _ = serde_json::to_writer(out, value);
}

/// True when `bytes` hold a quote, a backslash or a control character. Each 16-byte chunk is
/// tested whole, without an early exit, so the compiler makes it a few vector instructions.
fn needs_escaping(bytes: &[u8]) -> bool {
    let special = |byte: u8| byte < 0x20 || byte == b'"' || byte == b'\\';
    let mut chunks = bytes.chunks_exact(16);
    chunks.by_ref().any(|chunk| chunk.iter().fold(false, |found, &byte| found | special(byte)))
        || chunks.remainder().iter().any(|&byte| special(byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(text: &str) -> Vec<u8> {
        let mut out = b"x".to_vec();
        push_str(&mut out, text);
        out
    }

    #[test]
    fn strings_come_out_as_serde_json_writes_them_wherever_the_special_character_sits() {
        let plain = "a plain text of more than sixteen bytes, é and all";
        for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}"] {
            for at in [0, 5, 15, 16, 17, 31, 32, plain.len()] {
                let at = (0..=at).rev().find(|i| plain.is_char_boundary(*i)).unwrap_or(0);
                let text = format!("{}{special}{}", &plain[..at], &plain[at..]);
                let expected = [b"x".as_slice(), &serde_json::to_vec(&text).unwrap()].concat();
                assert_eq!(pushed(&text), expected, "{text:?}");
                assert!(needs_escaping(text.as_bytes()), "{text:?}");
            }
        }
        for text in ["", plain, &plain[..16], &plain[..32], "\u{7f}~ "] {
            assert_eq!(pushed(text), [b"x\"".as_slice(), text.as_bytes(), b"\""].concat());
            assert!(!needs_escaping(text.as_bytes()), "{text:?}");
        }
    }

    #[test]
    fn other_values_are_serialised() {
        let mut out = Vec::new();
        push_value(&mut out, &200u16);
        push_value(&mut out, &1.5f64);
        push_value(&mut out, &f64::NAN);
        push_value(&mut out, &format_args!("{:?}", ["a"]));
        assert_eq!(out, b"2001.5null\"[\\\"a\\\"]\"");
    }
}
