//! Unguessable values from the operating system's random source.

/// 128 random bits as 32 lowercase hex digits (resume keys, guest ids).
pub(crate) fn hex128() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_differ_and_are_128_bits_of_hex() {
        let (a, b) = (super::hex128(), super::hex128());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
