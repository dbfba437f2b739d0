-- Every blacklisting, whoever makes it (a doorman instance, the CLI, an import, SQL by hand),
-- notifies the channel `doorman_blacklisted` when its transaction commits, with the token's
-- expiry and jti (`<expires_at> <jti>`), so that the serving instances, which hold what they
-- know of the blacklist in memory (store/postgres/blacklist_memory.rs), learn of it at once.
-- One statement blacklisting more than 1000 tokens (a revocation), or a jti too long for a
-- notification's payload, notifies `*` instead: read the blacklist again. PostgreSQL only:
-- SQLite's lookups read the database every time.
CREATE FUNCTION doorman_blacklisted_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM added) > 1000
       OR EXISTS (SELECT 1 FROM added a JOIN outstanding_tokens o ON o.id = a.token_id
                  WHERE octet_length(o.jti) > 4000) THEN
        PERFORM pg_notify('doorman_blacklisted', '*');
    ELSE
        PERFORM pg_notify('doorman_blacklisted', o.expires_at::text || ' ' || o.jti)
        FROM added a JOIN outstanding_tokens o ON o.id = a.token_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER blacklisted_tokens_notify
    AFTER INSERT ON blacklisted_tokens
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION doorman_blacklisted_notify();
