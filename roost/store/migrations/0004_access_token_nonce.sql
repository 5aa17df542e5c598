-- Roost schema, version 4: a nonce per access token record, carried in its JWT and checked at
-- each use, so that a token deleted and created again with the same id gets a new JWT and the
-- old one stays dead. Tokens stored before get '' and keep their JWT (no nonce claim) working.
ALTER TABLE access_tokens ADD COLUMN nonce TEXT NOT NULL DEFAULT '';
