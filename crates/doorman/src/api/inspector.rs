//! `POST /api/token/inspect/`: the token debugger. Takes any token (and optionally the kind it
//! is expected to be) and answers 200 with what doorman makes of it and its unverified
//! contents, whatever the token; only a request without a token is refused. Needs no
//! authentication: it tells the holder of a token nothing the token doesn't carry, except
//! whether doorman still honours it.

use axum::routing::any;
use doorman_drf::{DrfError, RequestData, SerializerField, ViewMetadata};
use doorman_token::TokenKind;
use serde_json::{Map, Value, json};

use super::answer::Answer;
use super::cookies::CookieUse;
use super::endpoint::{Endpoint, Listener, always};
use super::error::ApiError;
use super::tokens::view;
use crate::accounts::inspection::{self, Inspection};
use crate::audit::Client;
use crate::state::AppState;

pub const INSPECT_PATH: &str = "/api/token/inspect/";

pub const ENDPOINTS: &[Endpoint] = &[Endpoint {
    path: INSPECT_PATH,
    allow: "POST, OPTIONS",
    metadata: Some(ViewMetadata {
        name: "Token Inspect",
        description: "Takes a token, and optionally the type it is expected to be, and tells what\nthis server makes of it: a verdict, its reason, and the token's unverified\nheader and claims.",
        post_fields: Some(&[
            SerializerField {
                name: "token",
                required: true,
                read_only: false,
            },
            SerializerField {
                name: "expect",
                required: false,
                read_only: false,
            },
        ]),
    }),
    metrics_label: INSPECT_PATH,
    listener: Listener::Api,
    // Its answers carry the token's claims.
    compressed: false,
    budget: super::endpoint::Budget::General,
    enabled: always,
    handler: |endpoint| {
        any(move |state, request| view(state, request, endpoint, CookieUse::None, inspect))
    },
}];

async fn inspect(state: AppState, data: RequestData, _: Client) -> Result<Answer, ApiError> {
    let (raw, expect) = token_and_expect(&data)?;
    let inspection = inspection::inspect(
        &state.tokens,
        &state.store,
        &state.config,
        &raw,
        expect,
        crate::unix_now(),
    )
    .await?;
    Ok(Answer::tokens(render(inspection)))
}

/// The `token` field, and `expect` when it is given: DRF's `CharField` and `ChoiceField`.
fn token_and_expect(data: &RequestData) -> Result<(String, Option<TokenKind>), ApiError> {
    if !data.contains("expect") {
        let [raw] = super::tokens::fields(data, ["token"])?;
        return Ok((raw, None));
    }
    let [raw, expect] = super::tokens::fields(data, ["token", "expect"])?;
    let kind = match expect.as_str() {
        "access" => TokenKind::Access,
        "refresh" => TokenKind::Refresh,
        "sliding" => TokenKind::Sliding,
        other => {
            let mut errors = Map::new();
            errors.insert(
                "expect".into(),
                json!([format!("\"{other}\" is not a valid choice.")]),
            );
            return Err(DrfError::Invalid(errors).into());
        }
    };
    Ok((raw, Some(kind)))
}

fn render(inspection: Inspection) -> Value {
    json!({
        "verdict": inspection.verdict.as_str(),
        "reason": inspection.reason,
        "header": inspection.header,
        "claims": inspection.claims,
        "token_type": inspection.token_type.map(TokenKind::as_str),
    })
}
