//! How a command fails: a message for stderr and the exit code it maps to.

/// A failure to report on stderr, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// A runtime failure (exit 1).
    pub fn runtime(message: impl std::fmt::Display) -> Failure {
        Failure {
            message: message.to_string(),
            code: 1,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl std::fmt::Display) -> Failure {
        Failure {
            message: message.to_string(),
            code: 2,
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        // `{:#}` keeps the whole cause chain on one line.
        Failure::runtime(format!("{:#}", error.into()))
    }
}
