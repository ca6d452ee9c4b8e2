//! Byte-level helpers for JSON text, shared by the engine's writer and the server's request
//! scanner.

/// The offset of the first byte at or after `at` that ends a run of bytes a JSON string
/// holds as they are: a quote, a backslash or a control character (or the end of `bytes`).
/// Eight bytes are tested at a time: in each word, the lowest flagged byte is exact (a false
/// flag only ever sits above a true one).
#[inline]
pub fn plain_run_end(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // A byte's high bit survives `- 0x01` after `^ '"'` (or `^ '\\'`) when it is that
        // byte, and `- 0x20` when it is below 0x20; `& !word` drops bytes at or above 0x80,
        // which the quote and the backslash leave at or above 0x80 after `^`.
        let flagged = ((word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES)
            | (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES)
            | word.wrapping_sub(ONES * 0x20))
            & !word
            & HIGHS;
        if flagged != 0 {
            // Little-endian: the lowest set bit is the first byte flagged.
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            return at;
        }
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_ends_at_the_first_byte_a_string_must_escape() {
        let special = |byte: u8| byte == b'"' || byte == b'\\' || byte < 0x20;
        // Every byte value, at every offset of a word and past the last whole word.
        for byte in 0..=255u8 {
            for at in 0..20 {
                let mut text = vec![b'a'; 20];
                text[at] = byte;
                let expected = if special(byte) { at } else { text.len() };
                assert_eq!(plain_run_end(&text, 0), expected, "byte {byte:#x} at {at}");
            }
        }
        // A byte at or above 0x80 before a quote does not hide it, nor flag itself.
        let text = "é\"".as_bytes();
        assert_eq!(plain_run_end(text, 0), 2);
        assert_eq!(plain_run_end(b"abc", 3), 3);
    }
}
