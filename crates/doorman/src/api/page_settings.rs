//! The web pages' one setting: `web_pages`, whether doorman serves its pages under `/ui/`
//! ([`super::pages`]).

use serde::Deserialize;

use crate::config::source::{ConfigError, Sources};
use crate::config::values::Flag;

/// The pages' settings as the layers give them.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct PageSettings {
    web_pages: Flag,
}

impl Default for PageSettings {
    fn default() -> Self {
        PageSettings {
            web_pages: Flag(true),
        }
    }
}

/// Whether doorman serves its pages.
#[derive(Clone, Debug)]
pub struct PagesConfig {
    /// Off: every `/ui/` path is the JSON 404 of any unknown path.
    pub web_pages: bool,
}

impl PageSettings {
    pub fn validate(self, _src: &Sources) -> Result<PagesConfig, ConfigError> {
        Ok(PagesConfig {
            web_pages: self.web_pages.0,
        })
    }
}
