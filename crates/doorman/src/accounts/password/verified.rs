//! What a password check concludes, shared by doorman's own hashes and Django's.

/// The outcome of a password check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The password is right. `needs_rehash` when the stored hash is not an argon2id hash with
    /// our parameters (a Django hash, or one made with other settings): the caller should store
    /// a fresh `hash` of the password it now knows, as Django's `must_update` does.
    Match {
        needs_rehash: bool,
    },
    Mismatch,
}
