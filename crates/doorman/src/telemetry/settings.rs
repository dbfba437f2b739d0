//! The telemetry settings: how log lines look.

use serde::Deserialize;

use super::LogFormat;
use crate::config::source::{ConfigError, Sources};

/// The telemetry settings as the layers give them.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    log_format: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            log_format: "auto".to_owned(),
        }
    }
}

/// How doorman reports on itself.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// Log lines as JSON, as text, or JSON unless on a terminal.
    pub log_format: LogFormat,
}

impl TelemetrySettings {
    pub fn validate(self, src: &Sources) -> Result<TelemetryConfig, ConfigError> {
        Ok(TelemetryConfig {
            log_format: self
                .log_format
                .parse()
                .map_err(|e: String| src.fail("log_format", e))?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::Overrides;
    use crate::config::testing::load;

    #[test]
    fn log_format_is_one_of_three() {
        use crate::telemetry::LogFormat;
        let c = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.telemetry.log_format, LogFormat::Auto);
        let c = load(
            None,
            &[("DOORMAN_LOG_FORMAT", "json")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.telemetry.log_format, LogFormat::Json);
        let err = load(None, &[("DOORMAN_LOG_FORMAT", "xml")], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("log_format") && err.contains("auto, json or text"),
            "{err}"
        );
    }
}
