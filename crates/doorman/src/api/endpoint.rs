//! The declaration each endpoint makes beside its handler: path, methods, what `OPTIONS`
//! shows, metrics label and listener. The routers, the metrics route list, the trailing-slash
//! redirect and the path prefixes static files can't use are all derived from these, so a new
//! endpoint is a handler plus its declaration.

use axum::routing::MethodRouter;
use doorman_drf::ViewMetadata;
use serde_json::Value;

use crate::config::Config;
pub use crate::serve::Budget;
use crate::state::AppState;

/// Which listener serves an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The API listener (`bind`) only.
    Api,
    /// The API listener and the admin one (`admin_bind`): the health checks.
    ApiAndAdmin,
    /// The admin listener when there is one, else the API listener: the metrics, which
    /// shouldn't be public when an operator has somewhere private to put them.
    AdminElseApi,
}

/// One endpoint, declared once.
pub struct Endpoint {
    pub path: &'static str,
    /// The methods it answers, as its `Allow` header lists them.
    pub allow: &'static str,
    /// What DRF's `OPTIONS` shows of it; `None` for the endpoints that aren't DRF views.
    pub metadata: Option<ViewMetadata>,
    /// The `route` label of its requests in the metrics.
    pub metrics_label: &'static str,
    pub listener: Listener,
    /// Whether its answers may be compressed: never for answers carrying tokens, which
    /// compression would expose to BREACH-style attacks.
    pub compressed: bool,
    /// Which slots its requests take (see [`Budget`]): the general ones, the hashing
    /// budget's (logins), or none (health checks).
    pub budget: Budget,
    /// Whether the configuration turns it on.
    pub enabled: fn(&Config) -> bool,
    /// Its handler, given its own declaration (for `Allow` and `OPTIONS`).
    pub handler: fn(&'static Endpoint) -> MethodRouter<AppState>,
}

/// For [`Endpoint::enabled`]: on in every configuration.
pub fn always(_: &Config) -> bool {
    true
}

impl Endpoint {
    /// Whether the API listener serves it under this configuration.
    pub fn on_api(&self, config: &Config) -> bool {
        (self.enabled)(config)
            && match self.listener {
                Listener::Api | Listener::ApiAndAdmin => true,
                Listener::AdminElseApi => config.server.admin_bind.is_none(),
            }
    }

    /// Whether the admin listener serves it (when there is one).
    pub fn on_admin(&self, config: &Config) -> bool {
        (self.enabled)(config)
            && matches!(
                self.listener,
                Listener::ApiAndAdmin | Listener::AdminElseApi
            )
    }

    /// The `OPTIONS` body of a DRF view.
    pub fn options(&self) -> Value {
        self.metadata
            .as_ref()
            .map_or(Value::Null, doorman_drf::options_metadata)
    }

    /// The path prefix no other route may take: its first segment, as a directory
    /// (`/api/token/refresh/` -> `/api/`, `/healthz` -> `/healthz/`).
    pub fn prefix(&self) -> String {
        let first = self
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        format!("/{first}/")
    }
}
