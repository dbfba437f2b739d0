//! Any text as a setting value: durations, listen addresses, the forwarding header's name,
//! flags and lists never panic, and what they accept reads back the same once written out.
#![no_main]

use std::time::Duration;

use doorman::config::values::{Flag, StringList, count, duration, parse_duration};
use doorman::serve::client::ForwardedHeader;
use doorman::serve::listen::Bind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(d) = parse_duration(text) {
        let ms = d.as_millis();
        assert_eq!(parse_duration(&format!("{ms}ms")), Some(d));
        if ms % 1000 == 0 {
            assert_eq!(parse_duration(&format!("{}", ms / 1000)), Some(d));
        }
        if let Ok(secs) = text.trim().parse::<u64>() {
            assert_eq!(d, Duration::from_secs(secs));
        }
    }
    if let Some(bind) = Bind::parse(text) {
        assert_eq!(Bind::parse(&bind.to_string()), Some(bind));
    }
    if let Some(header) = ForwardedHeader::parse(text) {
        assert!(
            text.eq_ignore_ascii_case("forwarded") || text.eq_ignore_ascii_case("x-forwarded-for")
        );
        let _ = header;
    }
    // The same text as a TOML or environment value would arrive: a JSON string or number.
    let quoted = serde_json::Value::String(text.to_owned()).to_string();
    for json in [text, quoted.as_str()] {
        let _ = serde_json::from_str::<Flag>(json);
        let _ = serde_json::from_str::<StringList>(json);
        let _ = duration::deserialize(&mut serde_json::Deserializer::from_str(json));
        let _ = count::deserialize(&mut serde_json::Deserializer::from_str(json));
    }
});
