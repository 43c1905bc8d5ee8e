-- Conveyor schema, version 11: API keys (docs/api.md, "API keys and roles").
--
-- A key is given to its holder once, as cvk_<prefix>_<secret>, and never stored: the table
-- keeps the prefix (12 hex digits, random, not secret: it finds the row and is shown in
-- listings) and the SHA-256 of the secret (43 base64url characters, 32 random bytes). A
-- fast hash is the right one here: a slow password hash protects secrets people choose,
-- which are few enough to guess; 256 random bits cannot be guessed however fast the hash,
-- and a request's check stays one cheap lookup by prefix and one constant-time comparison.
--
-- A revoked key keeps its row (who had access, and until when); its name is free for a new
-- key, so names are unique among the keys not revoked only. A name starts with a letter, so
-- it never reads as an id (`conveyor keys revoke 7` is the id 7).

CREATE TABLE api_keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CONSTRAINT name_form CHECK (name ~ '^[A-Za-z][A-Za-z0-9._@-]{0,63}$'),
    role text NOT NULL CONSTRAINT role_known CHECK (role IN ('viewer', 'operator', 'admin')),
    prefix text NOT NULL CONSTRAINT prefix_form CHECK (prefix ~ '^[0-9a-f]{12}$'),
    token_hash bytea NOT NULL CONSTRAINT token_hash_sha256 CHECK (octet_length(token_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_used_at timestamptz
);
COMMENT ON TABLE api_keys IS
    'API keys of the HTTP service: name, role (viewer, operator, admin), the non-secret prefix of '
    'the token and the SHA-256 of its secret; revoked keys stay, with revoked_at.';

-- The lookup of every authenticated request.
CREATE UNIQUE INDEX api_keys_prefix ON api_keys (prefix);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;
