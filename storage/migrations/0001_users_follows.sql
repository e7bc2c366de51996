-- Accounts, refresh-token families and the follow graph.

CREATE TABLE users (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username         text NOT NULL CHECK (username ~ '^[A-Za-z0-9_]{3,30}$'),
    email            text NOT NULL CHECK (length(email) <= 254),
    password_hash    text NOT NULL,
    display_name     text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 50),
    avatar_url       text,
    bio              text NOT NULL DEFAULT '' CHECK (length(bio) <= 500),
    verified         boolean NOT NULL DEFAULT false,
    email_verified   boolean NOT NULL DEFAULT false,
    role             text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'creator', 'admin')),
    follower_count   integer NOT NULL DEFAULT 0 CHECK (follower_count >= 0),
    following_count  integer NOT NULL DEFAULT 0 CHECK (following_count >= 0),
    settings         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_login_at    timestamptz
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- One row per login session. Refresh tokens rotate: only current_jti may be redeemed, and
-- presenting an older one means the family leaked, so the whole family is revoked.
CREATE TABLE refresh_token_families (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    current_jti  uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rotated_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    revoked_reason text
);
CREATE INDEX refresh_token_families_user ON refresh_token_families (user_id);
CREATE INDEX refresh_token_families_expiry ON refresh_token_families (expires_at);

CREATE TABLE follows (
    follower_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    following_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (follower_id, following_id),
    CHECK (follower_id <> following_id)
);
-- Keyset pages: a user's followers and a user's followings, newest first.
CREATE INDEX follows_followers_page ON follows (following_id, created_at DESC, follower_id DESC);
CREATE INDEX follows_following_page ON follows (follower_id, created_at DESC, following_id DESC);
