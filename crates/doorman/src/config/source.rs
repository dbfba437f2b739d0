//! Names a setting and the layer its value came from, for messages ("setting `x` (from
//! environment variable DOORMAN_X)"), and lists the settings a section reads. A leaf: the
//! sections use it to explain their refusals without knowing how the layers are loaded.

use std::fmt;
use std::time::Duration;

use figment::{Figment, Metadata, Profile};
use serde::Deserialize;
use serde::de::{self, Visitor};

/// A configuration that can't be used, said in one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// Where each setting's value came from, as the loaded layers tell.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    figment: &'a Figment,
}

impl<'a> Sources<'a> {
    pub fn new(figment: &'a Figment) -> Sources<'a> {
        Sources { figment }
    }

    /// "setting `name` (from <source>)", or "(default)" when no layer set it.
    pub fn named(&self, key: &str) -> String {
        match self.figment.find_metadata(key) {
            Some(md) => format!("setting `{key}` (from {})", source_of(md, key)),
            None => format!("setting `{key}` (default)"),
        }
    }

    /// The setting `key` can't be used, for the reason `problem` gives.
    pub fn fail(&self, key: &str, problem: impl fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {problem}", self.named(key)))
    }

    /// Refuses a timeout or interval of 0 (which would never fire, or always), in the same
    /// words for every such setting.
    pub fn nonzero(&self, key: &str, value: Duration) -> Result<Duration, ConfigError> {
        match value.is_zero() {
            true => Err(self.fail(key, "expected a timeout longer than 0 seconds")),
            false => Ok(value),
        }
    }
}

/// Where a setting's value came from, in the operator's words.
pub fn source_of(md: &Metadata, key: &str) -> String {
    match &md.source {
        Some(figment::Source::File(path)) => format!("{} {}", md.name, path.display()),
        _ => format!("{} {}", md.name, md.interpolate(&Profile::Default, &[key])),
    }
}

/// The settings a section's raw struct reads: its fields, as serde's derive names them when
/// it asks for a struct, so the list can't drift from the struct.
pub fn setting_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(AskForNames) {
        Err(Names(Some(names))) => names,
        _ => &[],
    }
}

/// A deserializer that only takes note of the field names it is asked for.
struct AskForNames;

/// What [`AskForNames`] ends with: the names, when it was asked for a struct.
#[derive(Debug)]
struct Names(Option<&'static [&'static str]>);

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a struct of settings")
    }
}

impl std::error::Error for Names {}

impl de::Error for Names {
    fn custom<T: fmt::Display>(_: T) -> Names {
        Names(None)
    }
}

impl<'de> de::Deserializer<'de> for AskForNames {
    type Error = Names;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Names> {
        Err(Names(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Names> {
        Err(Names(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
