-- People log in with a username and password (argon2) and get a session: an HTTP-only
-- cookie for the web board, or a bearer token for API clients. Ids only in logs.
CREATE TABLE accounts (
    id                  TEXT PRIMARY KEY,
    username            TEXT NOT NULL UNIQUE,
    -- argon2 PHC string; the password itself is never stored
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL,          -- family | village | town | district
    scope_kind          TEXT NOT NULL,          -- household | village | town | district
    scope_id            TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL,
    disabled_at         BIGINT
);

CREATE TABLE sessions (
    -- SHA-256 (hex) of the 256-bit random session token
    token_hash  TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    source      TEXT
);
CREATE INDEX sessions_account ON sessions(account_id);
CREATE INDEX sessions_expires ON sessions(expires_at);
