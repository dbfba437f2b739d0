//! `doorman openapi`: prints the OpenAPI 3.1 document `/api/schema/` serves under the same
//! configuration, for client generators and API gateways that read it from a file.

use std::io::Write;

use super::failure::Failure;
use crate::config::Config;

pub fn run(config: &Config) -> Result<(), Failure> {
    let document = crate::api::schema::document(config, crate::api::endpoints());
    let text = serde_json::to_string_pretty(&document)
        .map_err(|e| Failure::runtime(format!("could not render the document: {e}")))?;
    // Written rather than printed, so a closed pipe (`doorman openapi | head`) is an error
    // message, not a panic.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::runtime(format!("could not write the document: {e}")))
}
