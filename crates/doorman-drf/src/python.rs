//! Python's own rules, which DRF's answers inherit: what `str.strip()` removes, what
//! `str.isprintable()` keeps, how `str()` writes a float and how `int()` reads a number.

/// `str.isspace()`: Unicode White_Space plus the ASCII separators 0x1C-0x1F, which Python also
/// counts (so `"\x1c".strip() == ""`).
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.strip()` without arguments.
pub fn strip(text: &str) -> &str {
    text.trim_matches(is_space)
}

/// `str.isprintable()` for one character: not in Unicode's "Other" or "Separator" categories,
/// except the ASCII space. Unassigned code points (category Cn) are not tabulated here and
/// count as printable.
pub fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let code = u32::from(c);
    let other_or_separator = c.is_control()
        || (is_space(c) && !c.is_ascii())
        || (0xE000..=0xF8FF).contains(&code)
        || (0xF0000..=0xFFFFD).contains(&code)
        || (0x100000..=0x10FFFD).contains(&code)
        || FORMAT_CHARACTERS
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&code));
    !other_or_separator
}

/// Unicode category Cf (format characters), as of Unicode 14 (Python 3.11).
const FORMAT_CHARACTERS: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// `str(x)` (= `repr(x)`) of a float: the shortest digits that read back as `x`, in exponent
/// form outside `1e-4 <= |x| < 1e16`, and never without a `.0` or an exponent.
pub fn float_str(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` also prints the shortest round-trip digits.
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let count = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    // The decimal point sits after `point` digits (Python's `decpt`).
    let point = exponent + 1;
    let body = if -4 < point && point <= 16 {
        fixed_notation(&digits, point, count)
    } else {
        let rest = digits.get(1..).unwrap_or("");
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let first = digits.get(..1).unwrap_or("0");
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{first}{fraction}e{exp_sign}{:02}", exponent.abs())
    };
    format!("{sign}{body}")
}

fn fixed_notation(digits: &str, point: i32, count: i32) -> String {
    let zeros = |n: i32| "0".repeat(usize::try_from(n).unwrap_or(0));
    if point <= 0 {
        format!("0.{}{digits}", zeros(-point))
    } else if point >= count {
        format!("{digits}{}.0", zeros(point - count))
    } else {
        let split = usize::try_from(point).unwrap_or(0);
        let (whole, fraction) = digits.split_at(split.min(digits.len()));
        format!("{whole}.{fraction}")
    }
}

/// `int(text)` for the `indent` media type parameter: surrounding whitespace, a sign, ASCII
/// digits with single underscores between them. `None` where Python raises ValueError.
/// Magnitudes beyond `i64` saturate, which the caller clamps to 0..=8 anyway.
pub fn int_value(text: &str) -> Option<i64> {
    let text = strip(text);
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let magnitude = digits
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0i64, |acc, d| {
            acc.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn strip_is_pythons() {
        assert_eq!(strip("\u{1c}\u{2003} a\u{a0}\u{3000}\u{85}"), "a");
        // Not whitespace for Python: zero-width space, BOM, Mongolian vowel separator.
        assert_eq!(strip("\u{200b}"), "\u{200b}");
        assert_eq!(strip("\u{feff}"), "\u{feff}");
        assert_eq!(strip("\u{180e}"), "\u{180e}");
    }

    #[test]
    fn printable_is_pythons() {
        assert!(is_printable(' '));
        assert!(is_printable('é'));
        assert!(!is_printable('\t'));
        assert!(!is_printable('\u{a0}'));
        assert!(!is_printable('\u{200b}'));
        assert!(!is_printable('\u{2028}'));
        assert!(!is_printable('\u{e000}'));
    }

    #[test]
    fn float_str_is_pythons() {
        // Expected values from CPython 3.11 `str(float(literal))`.
        for (x, s) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1234567890123456.7, "1234567890123456.8"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (123.456, "123.456"),
            (1e300, "1e+300"),
            (1e22, "1e+22"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (-0.0, "-0.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (100.0, "100.0"),
            (12345678901234567890.0, "1.2345678901234567e+19"),
        ] {
            assert_eq!(float_str(x), s);
        }
    }

    #[test]
    fn float_str_matches_cpython_on_random_bits() {
        // Generated by CPython 3.11: `str(struct.unpack("<d", bits)[0])`.
        let cases: &[(u64, &str)] = &[
            (0xf2a74de452e6b438, "-1.989032661366619e+244"),
            (0x6513270e269e0d37, "7.761117632285041e+178"),
            (0x0c5c7fd0a6a3a450, "3.980498358697587e-249"),
            (0xd23f0824128b2f33, "-1.5432835417340557e+88"),
            (0x1818e811892f902b, "1.3647584518757569e-192"),
            (0x9531985d5d9dc9f8, "-1.3701135617873088e-206"),
            (0xe8e25d940ed90475, "-1.7160537630466207e+197"),
            (0x36f675cc81e74ef5, "6.294675241195386e-44"),
            (0x1600a35a099950d8, "1.0613447212142254e-202"),
            (0x6b0d549b6f03675a, "4.708325160387546e+207"),
            (0x3d9c172411e20b8f, "6.387016158513563e-12"),
            (0x8d116ece1738f7d9, "-9.973130378568733e-246"),
            (0x0f21ddb66cad4a26, "8.779753225680271e-236"),
            (0x90c192cfd3ac94af, "-5.795503248498993e-228"),
            (0xf28c105d1fb17c23, "-5.988180159386011e+243"),
            (0xa170b33839263059, "-1.306052388527796e-147"),
            (0x953f48f1a09f76b5, "-2.436117699484841e-206"),
            (0x0fd630f1f29d0da9, "2.233386999150174e-232"),
            (0x95e60af593bd04cf, "-3.51527970626667e-203"),
            (0x0cb1e29c658cda14, "1.5987381841032883e-247"),
            (0x3898d190f9ebdacc, "4.6678633181812096e-36"),
            (0x8e81973e0becd7b0, "-8.441872792105456e-239"),
            (0x2217beaddbc496cb, "1.9015657400796622e-144"),
            (0x6b4cb2424a23d596, "7.370437700706684e+208"),
            (0x8a6a63ec24ede6a4, "-1.7163996725272777e-258"),
            (0x922766581e27a1c0, "-3.2367190832119987e-221"),
            (0x8f6d05584ef8aa38, "-2.2818334634712625e-234"),
            (0xae97ba94d0eda82f, "-3.0536383926309363e-84"),
            (0x1a61dbe22e44158b, "1.3449551894627777e-181"),
            (0x923a736994e3bf91, "-7.317495976062606e-221"),
            (0x301850c5a38fd547, "5.249822308814304e-77"),
            (0x18f135d25f557203, "1.5450754142984396e-188"),
            (0xb64ce4228c38fb29, "-3.953625698224792e-47"),
            (0x907a70c31012f037, "-2.72491267476498e-229"),
            (0x9e7769b10f4205b4, "-6.505141861548772e-162"),
            (0x7f15052434b9b5df, "1.441484839555994e+304"),
            (0x881ed162ae2eb154, "-1.4583679262758548e-269"),
            (0xc6f877186d76b07e, "-7.939416668807721e+33"),
            (0x7731af10506bf2ef, "1.4255183989699612e+266"),
            (0xec66a78795e761d1, "-1.525315701232403e+214"),
            (0x3e4a82bc4b32f8e2, "1.2344999999999999e-08"),
            (0x3e8091b5aeffdb8d, "1.2344999999999998e-07"),
            (0x3eb4b6231abfd270, "1.2344999999999998e-06"),
            (0x3ee9e3abe16fc70d, "1.2345e-05"),
            (0x3f202e4b6ce5dc68, "0.00012345"),
            (0x3f5439de481f5382, "0.0012345"),
            (0x3f894855da272863, "0.012345"),
            (0x3fbf9a6b50b0f27c, "0.12345"),
            (0x3ff3c083126e978d, "1.2345"),
            (0x4028b0a3d70a3d70, "12.344999999999999"),
            (0x405edccccccccccc, "123.44999999999999"),
            (0x40934a0000000000, "1234.5"),
            (0x40c81c8000000000, "12345.0"),
            (0x40fe23a000000000, "123450.0"),
            (0x4132d64400000000, "1234500.0"),
            (0x41678bd500000000, "12345000.0"),
            (0x419d6eca40000000, "123450000.0"),
            (0x41d2653e68000000, "1234500000.0"),
            (0x4206fe8e02000000, "12345000000.0"),
            (0x423cbe3182800000, "123450000000.0"),
            (0x4271f6def1900000, "1234500000000.0"),
            (0x42a67496adf40000, "12345000000000.0"),
            (0x42dc11bc59710000, "123450000000000.0"),
            (0x43118b15b7e6a000, "1234500000000000.0"),
            (0x4345eddb25e04800, "1.2345e+16"),
            (0x437b6951ef585a00, "1.2345e+17"),
            (0x43b121d335973840, "1.2345e+18"),
            (0x43e56a4802fd0650, "1.2345e+19"),
            (0x441ac4da03bc47e4, "1.2345e+20"),
            (0x4450bb084255acee, "1.2345e+21"),
            (0x4484e9ca52eb182a, "1.2345e+22"),
            (0x44ba243ce7a5de35, "1.2345e+23"),
            (0x44f056a610c7aae1, "1.2345e+24"),
        ];
        for (bits, expected) in cases {
            assert_eq!(float_str(f64::from_bits(*bits)), *expected);
        }
    }

    #[test]
    fn int_value_is_pythons() {
        assert_eq!(int_value(" 4 "), Some(4));
        assert_eq!(int_value("+2"), Some(2));
        assert_eq!(int_value("-1"), Some(-1));
        assert_eq!(int_value("1_0"), Some(10));
        assert_eq!(int_value("1__0"), None);
        assert_eq!(int_value("_1"), None);
        assert_eq!(int_value("4.0"), None);
        assert_eq!(int_value(""), None);
        assert_eq!(int_value("99999999999999999999999"), Some(i64::MAX));
    }
}
