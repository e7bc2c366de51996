-- Videos (the CLUTCH, S3 video library, direct-upload and Clipsy APIs), 24-hour clips (the Stories
-- API), and idempotency for incoming webhooks.

CREATE TABLE videos (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title               text NOT NULL DEFAULT '' CHECK (length(title) <= 100),
    description         text NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'uploading', 'processing', 'ready', 'failed')),
    progress            real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    error               text,
    provider            text NOT NULL DEFAULT 'reelwire',
    source              text NOT NULL DEFAULT 'upload'
                        CHECK (source IN ('upload', 'library', 'direct', 'clip')),
    visibility          text NOT NULL DEFAULT 'public'
                        CHECK (visibility IN ('public', 'unlisted', 'private')),
    category            text,
    tags                text[] NOT NULL DEFAULT '{}',
    -- the original as uploaded
    source_key          text UNIQUE,
    original_filename   text NOT NULL DEFAULT '',
    content_type        text,
    file_size           bigint,
    declared_size       bigint,
    declared_type       text,
    upload_expires_at   timestamptz,
    -- what the probe found
    duration            double precision,
    width               integer,
    height              integer,
    fps                 real,
    has_audio           boolean,
    video_codec         text,
    probe               jsonb,
    -- what the transcode made (keys in blob storage) or an external transcoder reported (urls)
    hls_key             text,
    thumbnail_key       text,
    storyboard_key      text,
    storyboard_vtt_key  text,
    qualities           jsonb NOT NULL DEFAULT '[]'::jsonb,
    external            jsonb NOT NULL DEFAULT '{}'::jsonb,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- counters (kept by the social layer)
    view_count          bigint NOT NULL DEFAULT 0,
    like_count          integer NOT NULL DEFAULT 0,
    dislike_count       integer NOT NULL DEFAULT 0,
    comment_count       integer NOT NULL DEFAULT 0,
    watch_time_seconds  bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at        timestamptz,
    processed_at        timestamptz,
    deleted_at          timestamptz
);
CREATE INDEX videos_owner_created ON videos (owner_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;

CREATE TABLE clips (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('video', 'image')),
    video_id       uuid REFERENCES videos (id) ON DELETE CASCADE,
    status         text NOT NULL DEFAULT 'processing'
                   CHECK (status IN ('processing', 'ready', 'failed')),
    error          text,
    source_key     text,
    image_key      text,
    thumbnail_key  text,
    content_type   text,
    file_size      bigint,
    width          integer,
    height         integer,
    caption        text NOT NULL DEFAULT '' CHECK (length(caption) <= 500),
    owns_video     boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at     timestamptz NOT NULL,
    CHECK ((kind = 'video') = (video_id IS NOT NULL))
);
CREATE INDEX clips_user_active ON clips (user_id, expires_at, created_at DESC);
CREATE INDEX clips_expiry ON clips (expires_at);

CREATE TABLE webhook_events (
    event_id     text PRIMARY KEY,
    endpoint     text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
