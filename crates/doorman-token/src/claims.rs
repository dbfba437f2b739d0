//! A token's payload: an ordered JSON object, because simplejwt's claim order is part of the
//! contract (`token_type, exp, iat, jti, user_id`) and refresh copies unknown claims through.

use std::sync::Arc;

use serde_json::{Map, Value};

/// The decoded (or to-be-encoded) payload of a token, in claim order. Shared, copied on the
/// first change: every request with a cached token gets its claims, and a clone of the map
/// was a dozen allocations each time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims(Arc<Map<String, Value>>);

/// The user a token names, as found in its user-id claim. simplejwt 5.5.1 emits a string; older
/// versions and other issuers emit a number; both name the same row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserId {
    /// A positive integer id, from `"42"` or `42`.
    Id(i64),
    /// Present but naming no possible user (`null`, `"abc"`, `1.5`, `true`, ...). simplejwt answers
    /// these with "User not found" (or a 500); doorman always answers like a missing user.
    Unresolvable,
}

impl Claims {
    pub fn new() -> Self {
        Claims::default()
    }

    pub fn from_map(map: Map<String, Value>) -> Self {
        Claims(Arc::new(map))
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_map(self) -> Map<String, Value> {
        Arc::unwrap_or_clone(self.0)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Sets a claim; an existing claim keeps its position, a new one goes last (as a Python dict).
    pub fn insert(&mut self, name: &str, value: impl Into<Value>) {
        Arc::make_mut(&mut self.0).insert(name.to_owned(), value.into());
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// A string claim, or `None` if absent or not a string.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A numeric time claim as whole seconds, truncated toward zero like Python's `int()`.
    /// Strings, booleans and out-of-range numbers are not times.
    pub(crate) fn seconds(&self, name: &str) -> Option<Result<i64, ()>> {
        self.0.get(name).map(seconds_of)
    }

    /// `iat` in whole seconds; `None` when it is absent or not a time.
    pub fn issued_at(&self) -> Option<i64> {
        self.seconds("iat").and_then(Result::ok)
    }

    /// Reads the user-id claim. `None` when the claim is absent.
    pub fn user_id(&self, claim: &str) -> Option<UserId> {
        self.0.get(claim).map(|value| match value {
            Value::String(s) => parse_id(s),
            Value::Number(n) => n
                .as_i64()
                .filter(|id| *id > 0)
                .map_or(UserId::Unresolvable, UserId::Id),
            _ => UserId::Unresolvable,
        })
    }
}

fn parse_id(s: &str) -> UserId {
    // Only plain decimal digits: "007", " 7" or "+7" are not ids doorman ever issued.
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return UserId::Unresolvable;
    }
    match s.parse::<i64>() {
        Ok(id) if id > 0 => UserId::Id(id),
        _ => UserId::Unresolvable,
    }
}

pub(crate) fn seconds_of(value: &Value) -> Result<i64, ()> {
    let Value::Number(n) = value else {
        return Err(());
    };
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        // Python's int(float) truncates toward zero; beyond i64 range is not a time.
        Some(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(f.trunc() as i64),
        _ => Err(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        Claims::from_map(v.as_object().unwrap().clone())
    }

    #[test]
    fn user_id_accepts_strings_and_numbers() {
        assert_eq!(
            claims(json!({"user_id": "42"})).user_id("user_id"),
            Some(UserId::Id(42))
        );
        assert_eq!(
            claims(json!({"user_id": 42})).user_id("user_id"),
            Some(UserId::Id(42))
        );
        assert_eq!(claims(json!({})).user_id("user_id"), None);
    }

    #[test]
    fn odd_user_ids_are_unresolvable_not_errors() {
        for v in [
            json!(null),
            json!("abc"),
            json!(1.5),
            json!(true),
            json!(""),
            json!(" 1"),
            json!(-3),
            json!(0),
            json!("99999999999999999999999"),
        ] {
            assert_eq!(
                claims(json!({"user_id": v})).user_id("user_id"),
                Some(UserId::Unresolvable),
                "{v}"
            );
        }
    }

    #[test]
    fn time_claims_truncate_like_python() {
        assert_eq!(claims(json!({"exp": 10.9})).seconds("exp"), Some(Ok(10)));
        assert_eq!(claims(json!({"exp": "10"})).seconds("exp"), Some(Err(())));
        assert_eq!(claims(json!({"exp": 1e300})).seconds("exp"), Some(Err(())));
        assert_eq!(claims(json!({"exp": true})).seconds("exp"), Some(Err(())));
    }

    #[test]
    fn insert_keeps_position_of_existing_claims() {
        let mut c = claims(json!({"a": 1, "b": 2}));
        c.insert("a", 3);
        c.insert("z", 4);
        let keys: Vec<_> = c.as_map().keys().cloned().collect();
        assert_eq!(keys, ["a", "b", "z"]);
    }

    /// Clones share the map until one changes: the change is that clone's alone.
    #[test]
    fn a_changed_clone_leaves_the_original_alone() {
        let original = claims(json!({"exp": 10, "jti": "a"}));
        let mut copy = original.clone();
        copy.insert("exp", 20);
        copy.insert("new", true);
        assert_eq!(
            original.as_map(),
            claims(json!({"exp": 10, "jti": "a"})).as_map()
        );
        assert_eq!(copy.get("exp"), Some(&json!(20)));
        assert_eq!(original.clone().into_map().len(), 2);
    }
}
