//! The queries that read the same on SQLite and PostgreSQL (`$1` placeholders, `RETURNING`,
//! `ON CONFLICT` work on both), written once and expanded into each backend's store, so the
//! two can't drift apart. What differs (connecting, migrations, how a race-deciding
//! transaction starts) stays in `sqlite.rs` and `postgres.rs`.

/// Expands, in the calling backend module, the shared store methods for `$store` (which has a
/// `pool` field) and the shared helpers over `$conn`, that backend's connection type.
macro_rules! portable_queries {
    ($store:ty, $conn:ty) => {
        /// Every user query reads the same columns, in the shape of `UserRow`.
        macro_rules! select_users {
            ($rest:literal) => {
                concat!(
                    "SELECT id, username, password, is_active, is_superuser, last_login, date_joined, ",
                    "tokens_valid_after ",
                    "FROM users ",
                    $rest
                )
            };
        }

        impl $store {
            pub fn pool_stats(&self) -> super::PoolStats {
                super::PoolStats {
                    open: self.pool.size(),
                    idle: self.pool.num_idle(),
                    max: self.pool.options().get_max_connections(),
                    reachable: true,
                    fast_failures: 0,
                }
            }

            pub async fn close(&self) {
                self.pool.close().await;
            }

            /// Applies pending migrations (`MIGRATOR` is the backend module's own set; on
            /// PostgreSQL sqlx holds an advisory lock around the run, so instances starting
            /// together migrate once).
            pub async fn migrate(&self) -> Result<Vec<MigrationInfo>, StoreError> {
                let before = self.migration_status().await?;
                MIGRATOR.run(&self.pool).await?;
                Ok(newly_applied(&before, self.migration_status().await?))
            }

            pub async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
                let rows: Vec<KeyRow> = sqlx::query_as(
                    "SELECT kid, alg, state, private_pem, created_at, state_since, retire_after
                     FROM signing_keys ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(StoredKey::try_from).collect()
            }

            pub async fn add_signing_key(&self, key: &StoredKey) -> Result<(), StoreError> {
                use secrecy::ExposeSecret;
                sqlx::query(
                    "INSERT INTO signing_keys
                     (kid, alg, state, private_pem, created_at, state_since, retire_after)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(key.state.as_str())
                .bind(key.private_pem.expose_secret())
                .bind(key.created_at)
                .bind(key.state_since)
                .bind(key.retire_after)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            pub async fn retire_signing_key(&self, kid: &str, now: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE signing_keys SET state = 'retired', state_since = $1
                     WHERE kid = $2 AND state IN ('next', 'retiring')",
                )
                .bind(now)
                .bind(kid)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            pub async fn retire_expired_keys(&self, now: i64) -> Result<Vec<String>, StoreError> {
                let mut kids: Vec<String> = sqlx::query_scalar(
                    "UPDATE signing_keys SET state = 'retired', state_since = $1
                     WHERE state = 'retiring' AND retire_after <= $1 RETURNING kid",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                kids.sort();
                Ok(kids)
            }

            /// The rotation's writes, inside the caller's transaction.
            async fn promote_next_key(
                conn: &mut $conn,
                now: i64,
                retire_after: i64,
            ) -> Result<KeyRotation, StoreError> {
                let next: Option<String> = sqlx::query_scalar(
                    "SELECT kid FROM signing_keys WHERE state = 'next'
                     ORDER BY created_at, kid LIMIT 1",
                )
                .fetch_optional(&mut *conn)
                .await?;
                let Some(promoted) = next else {
                    return Ok(KeyRotation::NoNextKey);
                };
                let retiring: Option<String> = sqlx::query_scalar(
                    "UPDATE signing_keys SET state = 'retiring', state_since = $1, retire_after = $2
                     WHERE state = 'current' RETURNING kid",
                )
                .bind(now)
                .bind(retire_after)
                .fetch_optional(&mut *conn)
                .await?;
                sqlx::query("UPDATE signing_keys SET state = 'current', state_since = $1 WHERE kid = $2")
                    .bind(now)
                    .bind(&promoted)
                    .execute(&mut *conn)
                    .await?;
                Ok(KeyRotation::Rotated { promoted, retiring })
            }
        pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
            let row: UserRow = sqlx::query_as(
                "INSERT INTO users (username, password, is_active, is_superuser, date_joined)
                 VALUES ($1, $2, $3, $4, $5)
                 RETURNING id, username, password, is_active, is_superuser, last_login, date_joined,
                           tokens_valid_after",
            )
            .bind(&new.username)
            .bind(&new.password_hash)
            .bind(new.is_active)
            .bind(new.is_superuser)
            .bind(OffsetDateTime::now_utc().unix_timestamp())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::UsernameTaken,
                _ => StoreError::from(e),
            })?;
            row.try_into()
        }

        pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
            let row: Option<UserRow> = sqlx::query_as(select_users!("WHERE username = $1"))
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
            row.map(User::try_from).transpose()
        }

        pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
            let row: Option<UserRow> = sqlx::query_as(select_users!("WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            row.map(User::try_from).transpose()
        }

        pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
            let rows: Vec<UserRow> = sqlx::query_as(select_users!("ORDER BY id"))
                .fetch_all(&self.pool)
                .await?;
            rows.into_iter().map(User::try_from).collect()
        }

        pub async fn set_password_hash(&self, id: i64, hash: &str) -> Result<bool, StoreError> {
            let done = sqlx::query("UPDATE users SET password = $1 WHERE id = $2")
                .bind(hash)
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub async fn replace_password_hash(
            &self,
            id: i64,
            expected: &str,
            hash: &str,
        ) -> Result<bool, StoreError> {
            // One statement, so the comparison and the write can't be split by another writer.
            let done = sqlx::query("UPDATE users SET password = $1 WHERE id = $2 AND password = $3")
                .bind(hash)
                .bind(id)
                .bind(expected)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub async fn set_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
            let done = sqlx::query("UPDATE users SET is_active = $1 WHERE username = $2")
                .bind(active)
                .bind(username)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
            let done = sqlx::query("DELETE FROM users WHERE username = $1")
                .bind(username)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub async fn audit_events(
            &self,
            filter: &super::AuditFilter,
        ) -> Result<Vec<super::AuditEvent>, StoreError> {
            // A NULL parameter leaves its condition out, so one statement serves every filter.
            let rows: Vec<super::AuditRow> = sqlx::query_as(
                "SELECT at, kind, username, user_id, client_addr, user_agent, detail
                 FROM audit_events
                 WHERE ($1 IS NULL OR username = $1) AND ($2 IS NULL OR at >= $2)
                 ORDER BY at, id",
            )
            .bind(filter.username.as_deref())
            .bind(filter.since.map(OffsetDateTime::unix_timestamp))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(super::AuditEvent::try_from).collect()
        }

        pub async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
            let done = sqlx::query("DELETE FROM audit_events WHERE at < $1")
                .bind(before.unix_timestamp())
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        }

        /// The family (NULL: its own), jti, owner and rotation time (Unix ms) of `jti` when
        /// a rotation blacklisted it.
        /// The rotated-out row `jti` and, in the same read, its successor's row unless that
        /// one is blacklisted.
        pub(super) async fn rotated_out(
            &self,
            jti: &str,
        ) -> Result<Option<super::portable::RotatedOutRow>, StoreError> {
            Ok(sqlx::query_as(
                "SELECT o.family, o.jti, o.user_id, o.rotated_at_ms,
                        s.jti AS successor_jti, s.user_id AS successor_user_id,
                        s.created_at AS successor_created_at,
                        s.expires_at AS successor_expires_at
                 FROM outstanding_tokens o JOIN blacklisted_tokens b ON b.token_id = o.id
                 LEFT JOIN outstanding_tokens s ON s.jti = o.replaced_by
                      AND NOT EXISTS (SELECT 1 FROM blacklisted_tokens sb WHERE sb.token_id = s.id)
                 WHERE o.jti = $1 AND o.rotated_at_ms IS NOT NULL",
            )
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?)
        }

        pub async fn throttle_unlock(&self, username: &str) -> Result<u64, StoreError> {
            // Pairs before the account, the order reservations lock them in.
            let mut cleared = 0;
            for scope in ["pair", "account"] {
                let done = sqlx::query(
                    "DELETE FROM login_throttle
                     WHERE scope = $1 AND username = $2 AND failures > 0",
                )
                .bind(scope)
                .bind(username)
                .execute(&self.pool)
                .await?;
                cleared += done.rows_affected();
            }
            Ok(cleared)
        }

        pub async fn prune_throttle(&self, now: i64) -> Result<u64, StoreError> {
            let done = sqlx::query("DELETE FROM login_throttle WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        }

        /// One page of users whose name contains `pattern` (a LIKE pattern, `\\` escaping),
        /// in id order, and how many match in all.
        pub(super) async fn find_users(
            &self,
            pattern: &str,
            limit: i64,
            offset: i64,
        ) -> Result<(i64, Vec<super::UserSummaryRow>), StoreError> {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM users WHERE LOWER(username) LIKE LOWER($1) ESCAPE '\\'",
            )
            .bind(pattern)
            .fetch_one(&self.pool)
            .await?;
            let rows = sqlx::query_as(
                "SELECT id, username, is_active, is_superuser, is_staff, email, last_login,
                        date_joined
                 FROM users WHERE LOWER(username) LIKE LOWER($1) ESCAPE '\\'
                 ORDER BY id LIMIT $2 OFFSET $3",
            )
            .bind(pattern)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
            Ok((count, rows))
        }

        pub(super) async fn user_summary(
            &self,
            username: &str,
        ) -> Result<Option<super::UserSummaryRow>, StoreError> {
            Ok(sqlx::query_as(
                "SELECT id, username, is_active, is_superuser, is_staff, email, last_login,
                        date_joined
                 FROM users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(&self.pool)
            .await?)
        }

        /// Up to `limit` audit events (of `username`, when given) with an id below `before`
        /// (when given), newest first.
        pub(super) async fn audit_page(
            &self,
            username: Option<&str>,
            before: Option<i64>,
            limit: i64,
        ) -> Result<Vec<super::AuditPageRow>, StoreError> {
            Ok(sqlx::query_as(
                "SELECT id, at, kind, username, user_id, client_addr, user_agent, detail
                 FROM audit_events
                 WHERE ($1 IS NULL OR username = $1) AND ($2 IS NULL OR id < $2)
                 ORDER BY id DESC LIMIT $3",
            )
            .bind(username)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
        }

        /// Every outstanding row of the user, with its family and whether it is blacklisted,
        /// oldest first.
        pub(super) async fn user_tokens(
            &self,
            user_id: i64,
        ) -> Result<Vec<super::portable::UserTokenRow>, StoreError> {
            Ok(sqlx::query_as(
                "SELECT COALESCE(o.family, o.jti) AS family, o.jti, o.created_at, o.expires_at,
                        o.client_addr, o.user_agent, b.id AS blacklist_id
                 FROM outstanding_tokens o LEFT JOIN blacklisted_tokens b ON b.token_id = o.id
                 WHERE o.user_id = $1
                 ORDER BY o.id",
            )
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?)
        }

        pub async fn is_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
            let mut conn = self.pool.acquire().await?;
            is_blacklisted(&mut conn, jti).await
        }

        /// Deletes the outstanding rows with `expires_at <= cutoff` (the caller has allowed
        /// for `leeway`).
        pub async fn flush_expired(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
            // Blacklist rows go by ON DELETE CASCADE, in the same statement.
            let done = sqlx::query("DELETE FROM outstanding_tokens WHERE expires_at <= $1")
                .bind(cutoff.unix_timestamp())
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        }
        }

        /// The revocation's writes, inside the caller's transaction (see
        /// `Store::revoke_user_tokens`): the blacklisting first, then the time, read after it.
        async fn revoke_in(
            conn: &mut $conn,
            id: i64,
        ) -> Result<Option<super::Revocation>, StoreError> {
            let blacklisted = sqlx::query(
                "INSERT INTO blacklisted_tokens (token_id, blacklisted_at)
                 SELECT o.id, $1 FROM outstanding_tokens o
                 WHERE o.user_id = $2
                   AND NOT EXISTS (SELECT 1 FROM blacklisted_tokens b WHERE b.token_id = o.id)
                 ORDER BY o.id
                 ON CONFLICT (token_id) DO NOTHING",
            )
            .bind(crate::unix_now())
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            let now = crate::unix_now();
            let revoked: Option<(String, i64)> = sqlx::query_as(
                "UPDATE users SET tokens_valid_after = CASE
                     WHEN tokens_valid_after IS NULL OR tokens_valid_after < $1 THEN $1
                     ELSE tokens_valid_after END
                 WHERE id = $2 RETURNING username, tokens_valid_after",
            )
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(revoked.map(|(username, tokens_valid_after)| super::Revocation {
                username,
                tokens_valid_after,
                blacklisted,
            }))
        }

        async fn is_blacklisted(conn: &mut $conn, jti: &str) -> Result<bool, StoreError> {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT b.id FROM blacklisted_tokens b JOIN outstanding_tokens o ON o.id = b.token_id
                 WHERE o.jti = $1",
            )
            .bind(jti)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(found.is_some())
        }
    };
}

pub(super) use portable_queries;

/// Blacklists every row of family `$2` not blacklisted yet, at `$1` (Unix seconds). The
/// family's first row may predate families (`family` NULL): its jti names the family.
/// A rotated-out `outstanding_tokens` row and its live successor's columns (all NULL when the
/// successor is blacklisted or gone), as [`Store::rotated_out`](super::Store::rotated_out)
/// reads them.
#[derive(sqlx::FromRow)]
pub(super) struct RotatedOutRow {
    pub family: Option<String>,
    pub jti: String,
    pub user_id: Option<i64>,
    pub rotated_at_ms: i64,
    pub successor_jti: Option<String>,
    pub successor_user_id: Option<i64>,
    pub successor_created_at: Option<i64>,
    pub successor_expires_at: Option<i64>,
}

/// An `outstanding_tokens` row of one user, as [`Store::sessions`](super::Store::sessions)
/// groups them into families.
#[derive(sqlx::FromRow)]
pub(super) struct UserTokenRow {
    pub family: String,
    pub jti: String,
    pub created_at: Option<i64>,
    pub expires_at: i64,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub blacklist_id: Option<i64>,
}

pub(super) const REVOKE_FAMILY: &str = "INSERT INTO blacklisted_tokens (token_id, blacklisted_at)
     SELECT id, $1 FROM outstanding_tokens WHERE family = $2 OR jti = $2
     ON CONFLICT (token_id) DO NOTHING";
