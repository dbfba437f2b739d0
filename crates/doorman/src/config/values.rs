//! How setting values are read: durations as seconds or `5m`/`1d`, booleans as `true`/`1`/`yes`,
//! lists as arrays or comma-separated text. Environment variables arrive as text, files typed.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// A boolean setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
                match v {
                    0 => Ok(Flag(false)),
                    1 => Ok(Flag(true)),
                    _ => Err(E::custom(format!("expected true or false, got {v}"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
                self.visit_u64(
                    u64::try_from(v)
                        .map_err(|_| E::custom(format!("expected true or false, got {v}")))?,
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => Ok(Flag(true)),
                    "false" | "0" | "no" | "off" => Ok(Flag(false)),
                    _ => Err(E::custom(format!("expected true or false, got {v:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of names: a TOML array, or `a,b` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of names, or names separated by commas")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(StringList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whole seconds as a duration, within the bound of every duration setting: its milliseconds
/// fit in 64 bits (some 584 million years). Beyond it, `now + duration` overflows the clock,
/// which panics wherever a deadline is computed.
fn from_secs(secs: u64) -> Option<Duration> {
    secs.checked_mul(1_000).map(|_| Duration::from_secs(secs))
}

/// Reads a duration: whole seconds (`300`, `"300"`) or numbers with units (`"5m"`, `"1d"`,
/// `"1h30m"`, `"250ms"`; units ms, s, m, h, d, w). Its milliseconds must fit in 64 bits.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return from_secs(secs);
    }
    let mut total_ms: u64 = 0;
    let mut digits = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit_ms: u64 = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 604_800_000,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() {
        return None;
    }
    Some(Duration::from_millis(total_ms))
}

pub mod duration {
    use super::*;

    const EXPECTED: &str = "seconds or a duration like \"5m\", \"1h30m\", \"1d\" or \"250ms\"";

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                from_secs(v).ok_or_else(|| E::custom(format!("expected {EXPECTED}, got {v}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .ok()
                    .and_then(from_secs)
                    .ok_or_else(|| E::custom(format!("expected {EXPECTED}, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v)
                    .ok_or_else(|| E::custom(format!("expected {EXPECTED}, got {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

pub mod count {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = usize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
                usize::try_from(v).map_err(|_| E::custom("number too large"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
                usize::try_from(v)
                    .map_err(|_| E::custom(format!("expected a whole number, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
                v.trim()
                    .parse()
                    .map_err(|_| E::custom(format!("expected a whole number, got {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("2s500ms"),
            Some(Duration::from_millis(2_500))
        );
        for bad in ["", "5", "m", "5x", "-5", "1.5h", "5m3"] {
            if bad == "5" {
                continue;
            }
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_duration("99999999999999999999w"), None);
        // Found by the settings_values fuzz target: whole seconds had no bound, and
        // `now + duration` panics past the clock's range. Both forms now share one bound.
        let last = u64::MAX / 1_000;
        assert_eq!(
            parse_duration(&last.to_string()),
            Some(Duration::from_secs(last))
        );
        assert_eq!(parse_duration(&(last + 1).to_string()), None);
        assert_eq!(parse_duration("18446744073709551615"), None);
        assert_eq!(
            parse_duration(&format!("{last}s")),
            parse_duration(&last.to_string())
        );
        for v in [serde_json::json!(u64::MAX), serde_json::json!(i64::MAX)] {
            assert!(duration::deserialize(v.clone()).is_err(), "{v}");
        }
        assert_eq!(
            duration::deserialize(serde_json::json!(300)).ok(),
            Some(Duration::from_secs(300))
        );
    }
}
