//! Turns a caller's number into a keyed hash at the edge. The number itself
//! is never stored, logged, or sent beyond the request that carried it.

use std::fmt;

/// A keyed hash of callers' numbers. Without the key a pseudonym cannot be
/// linked back to a number, even by trying every number.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: [u8; 32],
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer { key: <redacted> }")
    }
}

impl Pseudonymizer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// From 64 hex digits.
    pub fn from_hex(hex_key: &str) -> Result<Self, String> {
        let bytes = hex::decode(hex_key.trim()).map_err(|e| format!("not hex: {e}"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| "must be 32 bytes (64 hex digits)".to_string())?;
        Ok(Self::new(key))
    }

    /// A fresh random key: pseudonyms then hold for this process only.
    pub fn random() -> Self {
        Self::new(rand::random())
    }

    /// The pseudonym of `number` (formatting characters ignored), or an empty
    /// string for no number.
    pub fn pseudonym(&self, number: &str) -> String {
        let digits: String = number.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
        if digits.is_empty() {
            return String::new();
        }
        let hash = blake3::keyed_hash(&self.key, digits.as_bytes());
        hex::encode(&hash.as_bytes()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_number_same_pseudonym_whatever_the_formatting() {
        let p = Pseudonymizer::new([7; 32]);
        assert_eq!(p.pseudonym("+33 3 87 00 00 00"), p.pseudonym("+33387000000"));
        assert_eq!(p.pseudonym("+33387000000").len(), 32);
        assert!(!p.pseudonym("+33387000000").contains("33387"));
    }

    #[test]
    fn another_key_another_pseudonym() {
        let a = Pseudonymizer::new([1; 32]).pseudonym("0387000000");
        let b = Pseudonymizer::new([2; 32]).pseudonym("0387000000");
        assert_ne!(a, b);
        assert_eq!(Pseudonymizer::new([1; 32]).pseudonym(""), "");
    }

    #[test]
    fn hex_keys_are_checked() {
        assert!(Pseudonymizer::from_hex(&"ab".repeat(32)).is_ok());
        assert!(Pseudonymizer::from_hex("abcd").is_err());
        assert!(format!("{:?}", Pseudonymizer::new([9; 32])).contains("redacted"));
    }
}
