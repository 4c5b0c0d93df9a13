-- Responses stored under a client's Idempotency-Key. The flight actor writes
-- each row in the same transaction as the change the response describes, so
-- a stored response exists exactly when that change is committed. A row is
-- replayed for the same key and request until expires_at; after that the key
-- may be used again.

CREATE TABLE idempotency_keys (
    key           text        PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the method, the path and the raw request body.
    request_hash  bytea       NOT NULL CHECK (length(request_hash) = 32),
    -- Only successes and client errors are stored; a 5xx is never final.
    status        smallint    NOT NULL CHECK (status BETWEEN 200 AND 499),
    body          bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
