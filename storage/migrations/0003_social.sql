-- The social layer: reactions, comments, clip views and reactions, posts and communities,
-- and the indexes the public lists read through.

-- Counter changes bump counts_version in the same UPDATE, so events carrying absolute counts can
-- be ordered by whoever merges them (two commits may publish in the other order).
ALTER TABLE videos ADD COLUMN counts_version bigint NOT NULL DEFAULT 0;
ALTER TABLE videos ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', title || ' ' || description)) STORED;

CREATE INDEX videos_public_latest ON videos (published_at DESC, id DESC)
    WHERE status = 'ready' AND visibility = 'public' AND deleted_at IS NULL;
CREATE INDEX videos_public_popular ON videos (view_count DESC, id DESC)
    WHERE status = 'ready' AND visibility = 'public' AND deleted_at IS NULL;
CREATE INDEX videos_public_category ON videos (category, published_at DESC, id DESC)
    WHERE status = 'ready' AND visibility = 'public' AND deleted_at IS NULL;
CREATE INDEX videos_tags ON videos USING gin (tags) WHERE deleted_at IS NULL;
CREATE INDEX videos_search ON videos USING gin (search) WHERE deleted_at IS NULL;
CREATE INDEX videos_owner_published ON videos (owner_id, published_at DESC, id DESC)
    WHERE status = 'ready' AND deleted_at IS NULL;

-- One reaction per user per video: +1 like, -1 dislike.
CREATE TABLE video_reactions (
    video_id    uuid NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        smallint NOT NULL CHECK (kind IN (-1, 1)),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (video_id, user_id)
);
CREATE INDEX video_reactions_user ON video_reactions (user_id);

CREATE TABLE comments (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    video_id       uuid NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    parent_id      uuid REFERENCES comments (id) ON DELETE CASCADE,
    content        text NOT NULL CHECK (length(content) BETWEEN 1 AND 1000),
    like_count     integer NOT NULL DEFAULT 0 CHECK (like_count >= 0),
    dislike_count  integer NOT NULL DEFAULT 0 CHECK (dislike_count >= 0),
    reply_count    integer NOT NULL DEFAULT 0 CHECK (reply_count >= 0),
    edited         boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX comments_top_level ON comments (video_id, created_at DESC, id DESC)
    WHERE parent_id IS NULL;
CREATE INDEX comments_top_level_liked ON comments (video_id, like_count DESC, created_at DESC, id DESC)
    WHERE parent_id IS NULL;
CREATE INDEX comments_replies ON comments (parent_id, created_at, id) WHERE parent_id IS NOT NULL;
CREATE INDEX comments_user ON comments (user_id);

CREATE TABLE comment_reactions (
    comment_id  uuid NOT NULL REFERENCES comments (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        smallint NOT NULL CHECK (kind IN (-1, 1)),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (comment_id, user_id)
);
CREATE INDEX comment_reactions_user ON comment_reactions (user_id);

-- Set a user's reaction (1, -1, or 0 to remove) and move the counters in the same transaction.
-- One statement from the client, so the hot counter row is locked only from its UPDATE to the
-- commit. Returns nothing when the video does not exist or is private to someone else.
CREATE FUNCTION set_video_reaction(p_video uuid, p_user uuid, p_kind smallint, p_admin boolean)
RETURNS TABLE (like_count integer, dislike_count integer, comment_count integer,
               counts_version bigint, changed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    old smallint;
BEGIN
    PERFORM 1 FROM videos v WHERE v.id = p_video AND v.deleted_at IS NULL
        AND (v.visibility <> 'private' OR v.owner_id = p_user OR p_admin);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    LOOP
        SELECT r.kind INTO old FROM video_reactions r
            WHERE r.video_id = p_video AND r.user_id = p_user FOR UPDATE;
        IF FOUND THEN
            IF p_kind = 0 THEN
                DELETE FROM video_reactions r WHERE r.video_id = p_video AND r.user_id = p_user;
            ELSIF old <> p_kind THEN
                UPDATE video_reactions r SET kind = p_kind, created_at = now()
                    WHERE r.video_id = p_video AND r.user_id = p_user;
            END IF;
            EXIT;
        END IF;
        old := 0;
        EXIT WHEN p_kind = 0;
        INSERT INTO video_reactions (video_id, user_id, kind) VALUES (p_video, p_user, p_kind)
            ON CONFLICT DO NOTHING;
        EXIT WHEN FOUND;
        -- a concurrent request by the same user inserted first: lock its row and decide again
    END LOOP;
    IF old = p_kind THEN
        RETURN QUERY SELECT v.like_count, v.dislike_count, v.comment_count, v.counts_version,
                            false FROM videos v WHERE v.id = p_video;
    ELSE
        RETURN QUERY UPDATE videos v SET
                like_count = v.like_count + (p_kind = 1)::int - (old = 1)::int,
                dislike_count = v.dislike_count + (p_kind = -1)::int - (old = -1)::int,
                counts_version = v.counts_version + 1
            WHERE v.id = p_video
            RETURNING v.like_count, v.dislike_count, v.comment_count, v.counts_version, true;
    END IF;
END;
$$;

CREATE FUNCTION set_comment_reaction(p_comment uuid, p_user uuid, p_kind smallint)
RETURNS TABLE (like_count integer, dislike_count integer, changed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    old smallint;
BEGIN
    PERFORM 1 FROM comments c WHERE c.id = p_comment;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    LOOP
        SELECT r.kind INTO old FROM comment_reactions r
            WHERE r.comment_id = p_comment AND r.user_id = p_user FOR UPDATE;
        IF FOUND THEN
            IF p_kind = 0 THEN
                DELETE FROM comment_reactions r
                    WHERE r.comment_id = p_comment AND r.user_id = p_user;
            ELSIF old <> p_kind THEN
                UPDATE comment_reactions r SET kind = p_kind, created_at = now()
                    WHERE r.comment_id = p_comment AND r.user_id = p_user;
            END IF;
            EXIT;
        END IF;
        old := 0;
        EXIT WHEN p_kind = 0;
        INSERT INTO comment_reactions (comment_id, user_id, kind)
            VALUES (p_comment, p_user, p_kind) ON CONFLICT DO NOTHING;
        EXIT WHEN FOUND;
    END LOOP;
    IF old = p_kind THEN
        RETURN QUERY SELECT c.like_count, c.dislike_count, false FROM comments c
            WHERE c.id = p_comment;
    ELSE
        RETURN QUERY UPDATE comments c SET
                like_count = c.like_count + (p_kind = 1)::int - (old = 1)::int,
                dislike_count = c.dislike_count + (p_kind = -1)::int - (old = -1)::int
            WHERE c.id = p_comment
            RETURNING c.like_count, c.dislike_count, true;
    END IF;
END;
$$;

-- Views are counted in Redis and added here in batches. A batch id recorded in the same
-- transaction makes a retried flush (after a crash between commit and cleanup) a no-op.
CREATE TABLE counter_flushes (
    batch_id    uuid PRIMARY KEY,
    flushed_at  timestamptz NOT NULL DEFAULT now()
);

-- Clips: who viewed (once per viewer) and emoji reactions.
ALTER TABLE clips ADD COLUMN view_count integer NOT NULL DEFAULT 0 CHECK (view_count >= 0);
CREATE INDEX clips_active ON clips (created_at DESC, id DESC);

CREATE TABLE clip_views (
    clip_id    uuid NOT NULL REFERENCES clips (id) ON DELETE CASCADE,
    viewer_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    viewed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clip_id, viewer_id)
);

CREATE TABLE clip_reactions (
    clip_id     uuid NOT NULL REFERENCES clips (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji       text NOT NULL CHECK (length(emoji) BETWEEN 1 AND 16),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clip_id, user_id, emoji)
);

-- Posts and communities (the direct-upload API).
CREATE TABLE communities (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    owner_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    post_count    integer NOT NULL DEFAULT 0 CHECK (post_count >= 0),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX communities_name_key ON communities (lower(name));
CREATE INDEX communities_created ON communities (created_at DESC, id DESC);

CREATE TABLE posts (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    community_id  uuid REFERENCES communities (id) ON DELETE SET NULL,
    video_id      uuid REFERENCES videos (id) ON DELETE SET NULL,
    content       text NOT NULL DEFAULT '' CHECK (length(content) <= 5000),
    type          text NOT NULL DEFAULT 'text' CHECK (type IN ('text', 'video')),
    likes_count   integer NOT NULL DEFAULT 0,
    comments_count integer NOT NULL DEFAULT 0,
    shares_count  integer NOT NULL DEFAULT 0,
    views_count   integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX posts_created ON posts (created_at DESC, id DESC);
CREATE INDEX posts_community ON posts (community_id, created_at DESC, id DESC);
CREATE INDEX posts_user ON posts (user_id, created_at DESC);
