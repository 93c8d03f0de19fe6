-- Accounts own the credentials; contacts are whom to notify.
--
-- * A family account looks after the households where it is a contact (a daughter who
--   is a contact for both parents' homes sees both): `contacts.account_id`.
-- * API tokens belong to an account, expire, can be listed and revoked: `api_tokens`.
--   The per-contact tokens of the spine become tokens of an account with the contact's
--   id (created here when missing, with no password: '!' never verifies), so every
--   token that worked before the upgrade works after it, with the same scope.
-- * `contacts.account_id` says which account a contact is (acknowledgements by phone
--   in issue 6 are attributed through it).

CREATE TABLE api_tokens (
    -- public id (shown in lists, used to revoke); the token itself is never stored
    id           TEXT PRIMARY KEY,
    -- SHA-256 (hex) of the 256-bit random token (or of the token given in contacts.csv)
    token_hash   TEXT NOT NULL UNIQUE,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    label        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- NULL: no expiry (only tokens carried over from before this migration)
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_account ON api_tokens(account_id);

ALTER TABLE contacts ADD COLUMN account_id TEXT REFERENCES accounts(id);

-- Every contact with a token gets an account of its own id, unless one exists.
INSERT INTO accounts (id, username, password_hash, role, scope_kind, scope_id, created_at, password_changed_at)
SELECT c.id,
       CASE WHEN EXISTS (SELECT 1 FROM accounts a WHERE a.username = c.id)
            THEN 'contact-' || c.id ELSE c.id END,
       '!', c.role, c.scope_kind, c.scope_id, c.created_at, c.created_at
FROM contacts c
WHERE c.token_hash IS NOT NULL AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = c.id);

INSERT INTO api_tokens (id, token_hash, account_id, label, created_at)
SELECT lower(hex(randomblob(8))), c.token_hash, c.id, 'contact token (before accounts)', c.created_at
FROM contacts c WHERE c.token_hash IS NOT NULL;

UPDATE contacts SET account_id = id WHERE token_hash IS NOT NULL;
-- The column stays (SQLite cannot drop a UNIQUE column) but is no longer read or written.
UPDATE contacts SET token_hash = NULL;
