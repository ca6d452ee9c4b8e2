//! Exact Kubernetes resource quantities for CPU and memory.
//!
//! Kubernetes quantities (`500m`, `2`, `1.5Gi`, `1e3`) are parsed with integer arithmetic
//! only: CPU into whole millicores and memory into whole bytes. Values that Kubernetes
//! would accept but that cannot be represented exactly at that precision (`0.5m` CPU,
//! `0.5` bytes), negatives, and anything that is not a quantity are rejected with a
//! [`QuantityError`] saying why. [`Quantity`] writes itself back in the canonical form the
//! API server stores, so `2000m` becomes `2` and `1024Mi` becomes `1Gi`.

use std::fmt;

/// The largest magnitude we accept: 2^63 - 1 base units, the range of Kubernetes' int64 scaled values.
const MAX_UNITS: i128 = i64::MAX as i128;

/// What a quantity measures, which fixes the base unit it is held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// CPU, held in millicores.
    Cpu,
    /// Memory or storage, held in bytes.
    Memory,
}

impl ResourceKind {
    /// Name of the unit values are held in, for error messages.
    fn unit(self) -> &'static str {
        match self {
            ResourceKind::Cpu => "millicore",
            ResourceKind::Memory => "byte",
        }
    }

    /// Scale factor from one whole unit (a core, a byte) to the held unit.
    fn base_scale(self) -> i128 {
        match self {
            ResourceKind::Cpu => 1000,
            ResourceKind::Memory => 1,
        }
    }
}

/// The notation a quantity was written in; the canonical form keeps it, as Kubernetes does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notation {
    /// Powers of 1024: `Ki`, `Mi`, `Gi`, ...
    Binary,
    /// Powers of 1000 or a plain number: `k`, `M`, `G`, `m`, `1e3`, ...
    Decimal,
}

/// Why a string is not an acceptable quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text is empty.
    #[error("is empty")]
    Empty,
    /// The text holds a control character (newline, tab, NUL, ...).
    #[error("contains a control character")]
    ControlCharacter,
    /// The value is below zero.
    #[error("is negative")]
    Negative,
    /// The text does not follow the quantity grammar.
    #[error("is not a Kubernetes quantity")]
    Syntax,
    /// The value is too large to hold.
    #[error("is too large (at most 2^63-1 {unit}s)")]
    TooLarge {
        /// The unit the limit is expressed in.
        unit: &'static str,
    },
    /// The value has more precision than the unit allows.
    #[error("is finer than one {unit}")]
    TooPrecise {
        /// The smallest unit accepted.
        unit: &'static str,
    },
}

/// A non-negative CPU or memory amount, exact in millicores or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quantity {
    kind: ResourceKind,
    units: i64,
    notation: Notation,
}

// === impl Quantity ===

impl Quantity {
    /// Parses `text` as a quantity of `kind`.
    pub fn parse(text: &str, kind: ResourceKind) -> Result<Self, QuantityError> {
        if text.is_empty() {
            return Err(QuantityError::Empty);
        }
        if text.chars().any(char::is_control) {
            return Err(QuantityError::ControlCharacter);
        }
        let parsed = parse_number_and_suffix(text)?;
        let units = parsed.to_units(kind)?;
        Ok(Quantity {
            kind,
            units,
            notation: parsed.notation,
        })
    }

    /// A CPU amount in millicores.
    pub fn from_millicores(millicores: i64) -> Self {
        Quantity {
            kind: ResourceKind::Cpu,
            units: millicores.max(0),
            notation: Notation::Decimal,
        }
    }

    /// A memory amount in bytes, written with binary suffixes where exact.
    pub fn from_bytes(bytes: i64) -> Self {
        Quantity {
            kind: ResourceKind::Memory,
            units: bytes.max(0),
            notation: Notation::Binary,
        }
    }

    /// What this quantity measures.
    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    /// The amount in base units: millicores for CPU, bytes for memory.
    pub fn units(&self) -> i64 {
        self.units
    }

    /// The value written in the canonical form the API server stores.
    pub fn to_canonical(&self) -> String {
        self.text().to_string()
    }

    /// The value in canonical form (`500m`, `1`, `128Mi`, `1500k`), as Kubernetes writes it,
    /// formatted on the stack with no `fmt` machinery: the patch writes several per review.
    pub fn text(&self) -> QuantityText {
        let units = self.units;
        match self.kind {
            ResourceKind::Cpu if units % 1000 != 0 => QuantityText::new(units, "m"),
            ResourceKind::Cpu => with_suffixes(units / 1000, 1000, &DECIMAL_SUFFIXES),
            ResourceKind::Memory => match self.notation {
                Notation::Binary if units != 0 && units % 1024 == 0 => with_suffixes(units, 1024, &BINARY_SUFFIXES),
                _ => with_suffixes(units, 1000, &DECIMAL_SUFFIXES),
            },
        }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        if self.kind != other.kind {
            return None;
        }
        Some(self.units.cmp(&other.units))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Kubernetes' decimal suffixes, by power of 1000.
const DECIMAL_SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];

/// Kubernetes' binary suffixes, by power of 1024.
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// A whole number with the largest exact power-of-`base` suffix, as Kubernetes writes it.
fn with_suffixes(mut value: i64, base: i64, suffixes: &[&'static str; 7]) -> QuantityText {
    let mut index = 0;
    while value != 0 && value % base == 0 && index + 1 < suffixes.len() {
        value /= base;
        index += 1;
    }
    QuantityText::new(value, suffixes[index])
}

/// A quantity's canonical text, held on the stack: at most 20 digits and a two-letter suffix.
#[derive(Clone, Copy)]
pub struct QuantityText {
    bytes: [u8; 24],
    len: u8,
}

impl QuantityText {
    fn new(value: i64, suffix: &str) -> Self {
        let mut digits = itoa::Buffer::new();
        let mut text = QuantityText { bytes: [0; 24], len: 0 };
        for &byte in digits.format(value).as_bytes().iter().chain(suffix.as_bytes()) {
            if let Some(slot) = text.bytes.get_mut(usize::from(text.len)) {
                *slot = byte;
                text.len += 1;
            }
        }
        text
    }
}

impl std::ops::Deref for QuantityText {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII digits, `-` and a suffix from the lists above are ever written.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Debug for QuantityText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

// === parsing ===

/// A parsed `<digits>[.<digits>]<suffix>` with the value as `mantissa * 10^exp10 * 1024^exp1024`.
struct ParsedNumber {
    mantissa: i128,
    exp10: i32,
    exp1024: u32,
    notation: Notation,
}

impl ParsedNumber {
    fn to_units(&self, kind: ResourceKind) -> Result<i64, QuantityError> {
        let too_large = QuantityError::TooLarge { unit: kind.unit() };
        let mut numerator = self.mantissa.checked_mul(kind.base_scale()).ok_or(too_large.clone())?;
        for _ in 0..self.exp1024 {
            numerator = numerator.checked_mul(1024).ok_or(too_large.clone())?;
        }
        let units = if self.exp10 >= 0 {
            if numerator == 0 {
                0
            } else {
                let scale = 10i128.checked_pow(self.exp10 as u32).ok_or(too_large.clone())?;
                numerator.checked_mul(scale).ok_or(too_large.clone())?
            }
        } else {
            let divisor = 10i128
                .checked_pow(self.exp10.unsigned_abs())
                .ok_or(QuantityError::TooPrecise { unit: kind.unit() });
            match divisor {
                Ok(divisor) if numerator % divisor == 0 => numerator / divisor,
                _ if numerator == 0 => 0,
                _ => return Err(QuantityError::TooPrecise { unit: kind.unit() }),
            }
        };
        if units > MAX_UNITS {
            return Err(too_large);
        }
        i64::try_from(units).map_err(|_| too_large)
    }
}

fn parse_number_and_suffix(text: &str) -> Result<ParsedNumber, QuantityError> {
    let bytes = text.as_bytes();
    let mut position = 0;
    match bytes.first() {
        Some(b'-') => return Err(QuantityError::Negative),
        Some(b'+') => position += 1,
        _ => {}
    }
    let mut mantissa: i128 = 0;
    let mut exp10: i32 = 0;
    let mut digits = 0usize;
    let mut seen_point = false;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            b'0'..=b'9' => {
                digits += 1;
                // Keep the mantissa bounded; further digits only matter if non-zero.
                if mantissa < 10i128.pow(30) {
                    mantissa = mantissa * 10 + i128::from(byte - b'0');
                    if seen_point {
                        exp10 -= 1;
                    }
                } else if !seen_point {
                    exp10 = exp10.checked_add(1).ok_or(QuantityError::Syntax)?;
                } else if byte != b'0' {
                    return Err(QuantityError::TooPrecise { unit: "unit" });
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => break,
        }
        position += 1;
    }
    if digits == 0 {
        return Err(QuantityError::Syntax);
    }
    let suffix = &text[position..];
    let (suffix_exp10, exp1024, notation) = parse_suffix(suffix)?;
    Ok(ParsedNumber {
        mantissa,
        exp10: exp10.checked_add(suffix_exp10).ok_or(QuantityError::Syntax)?,
        exp1024,
        notation,
    })
}

/// Returns (power of ten, power of 1024, notation) for a suffix.
fn parse_suffix(suffix: &str) -> Result<(i32, u32, Notation), QuantityError> {
    let decimal = |exp| Ok((exp, 0, Notation::Decimal));
    let binary = |exp| Ok((0, exp, Notation::Binary));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => parse_exponent(suffix),
    }
}

fn parse_exponent(suffix: &str) -> Result<(i32, u32, Notation), QuantityError> {
    let rest = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))
        .ok_or(QuantityError::Syntax)?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::Syntax);
    }
    let exponent: i32 = rest.parse().map_err(|_| QuantityError::Syntax)?;
    Ok((exponent, 0, Notation::Decimal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cpu(text: &str) -> Result<i64, QuantityError> {
        Quantity::parse(text, ResourceKind::Cpu).map(|q| q.units())
    }

    fn memory(text: &str) -> Result<i64, QuantityError> {
        Quantity::parse(text, ResourceKind::Memory).map(|q| q.units())
    }

    #[test]
    fn parses_cpu_forms_to_millicores() {
        assert_eq!(cpu("100m"), Ok(100));
        assert_eq!(cpu("2"), Ok(2000));
        assert_eq!(cpu("0.5"), Ok(500));
        assert_eq!(cpu("1.25"), Ok(1250));
        assert_eq!(cpu("4000m"), Ok(4000));
        assert_eq!(cpu("1e3"), Ok(1_000_000));
        assert_eq!(cpu("+3"), Ok(3000));
        assert_eq!(cpu("500000u"), Ok(500));
        assert_eq!(cpu("0"), Ok(0));
    }

    #[test]
    fn parses_memory_forms_to_bytes() {
        assert_eq!(memory("128Mi"), Ok(128 * 1024 * 1024));
        assert_eq!(memory("1Gi"), Ok(1 << 30));
        assert_eq!(memory("1G"), Ok(1_000_000_000));
        assert_eq!(memory("1.5Gi"), Ok(3 << 29));
        assert_eq!(memory("129e6"), Ok(129_000_000));
        assert_eq!(memory("1k"), Ok(1000));
        assert_eq!(memory("1Ki"), Ok(1024));
    }

    #[test]
    fn rejects_bad_input_with_the_reason() {
        assert_eq!(cpu(""), Err(QuantityError::Empty));
        assert_eq!(cpu("-1"), Err(QuantityError::Negative));
        assert_eq!(cpu("abc"), Err(QuantityError::Syntax));
        assert_eq!(cpu("1.2.3"), Err(QuantityError::Syntax));
        assert_eq!(cpu("100 m"), Err(QuantityError::Syntax));
        assert_eq!(cpu("1m\n"), Err(QuantityError::ControlCharacter));
        assert_eq!(cpu("10Mb"), Err(QuantityError::Syntax));
        assert_eq!(cpu("."), Err(QuantityError::Syntax));
        assert_eq!(cpu("1e"), Err(QuantityError::Syntax));
        assert!(matches!(cpu("1e309"), Err(QuantityError::TooLarge { .. })));
        assert!(matches!(cpu("0.0000001m"), Err(QuantityError::TooPrecise { .. })));
        assert!(matches!(memory("0.5"), Err(QuantityError::TooPrecise { .. })));
        assert!(matches!(
            memory("9223372036854775807k"),
            Err(QuantityError::TooLarge { .. })
        ));
        assert_eq!(memory("9223372036854775807"), Ok(i64::MAX));
        assert!(matches!(
            cpu("9223372036854775807"),
            Err(QuantityError::TooLarge { .. })
        ));
    }

    #[test]
    fn writes_canonical_forms() {
        let canonical = |text: &str, kind| Quantity::parse(text, kind).map(|q| q.to_string());
        assert_eq!(canonical("2000m", ResourceKind::Cpu).as_deref(), Ok("2"));
        assert_eq!(canonical("1500m", ResourceKind::Cpu).as_deref(), Ok("1500m"));
        assert_eq!(canonical("0.1", ResourceKind::Cpu).as_deref(), Ok("100m"));
        assert_eq!(canonical("1e3", ResourceKind::Cpu).as_deref(), Ok("1k"));
        assert_eq!(canonical("1024Mi", ResourceKind::Memory).as_deref(), Ok("1Gi"));
        assert_eq!(canonical("1000Mi", ResourceKind::Memory).as_deref(), Ok("1000Mi"));
        assert_eq!(canonical("128000000", ResourceKind::Memory).as_deref(), Ok("128M"));
        assert_eq!(canonical("0.5Ki", ResourceKind::Memory).as_deref(), Ok("512"));
        assert_eq!(canonical("0", ResourceKind::Memory).as_deref(), Ok("0"));
        assert_eq!(canonical("1536", ResourceKind::Memory).as_deref(), Ok("1536"));
    }

    proptest! {
        #[test]
        fn cpu_round_trips_through_canonical_form(millicores in 0i64..=i64::MAX / 1000) {
            let quantity = Quantity::from_millicores(millicores);
            let reparsed = Quantity::parse(&quantity.to_string(), ResourceKind::Cpu).unwrap();
            prop_assert_eq!(reparsed.units(), millicores);
        }

        #[test]
        fn memory_round_trips_in_both_notations(bytes in 0i64..=i64::MAX, binary: bool) {
            let text = if binary { Quantity::from_bytes(bytes).to_string() } else { bytes.to_string() };
            let reparsed = Quantity::parse(&text, ResourceKind::Memory).unwrap();
            prop_assert_eq!(reparsed.units(), bytes);
            prop_assert_eq!(Quantity::parse(&reparsed.to_string(), ResourceKind::Memory).unwrap(), reparsed);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,24}") {
            let _ = Quantity::parse(&text, ResourceKind::Cpu);
            let _ = Quantity::parse(&text, ResourceKind::Memory);
        }
    }
}
