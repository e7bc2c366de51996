-- Resumable uploads (tus 1.0.0 at /api/uploads/). One row per upload, so any web process can
-- take the next chunk and the offset survives a restart. The bytes themselves are an append-only
-- part file under the data dir (local storage), or S3 multipart parts plus an object holding the
-- bytes that do not fill a part yet (S3 storage). The video (and, for a clip, the clip) the
-- upload becomes exists from creation, in status 'uploading'.

CREATE TABLE resumable_uploads (
    id              uuid PRIMARY KEY,
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('video', 'clip')),
    video_id        uuid REFERENCES videos (id) ON DELETE SET NULL,
    clip_id         uuid REFERENCES clips (id) ON DELETE SET NULL,
    upload_length   bigint NOT NULL CHECK (upload_length > 0),
    upload_offset   bigint NOT NULL DEFAULT 0,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    state           text NOT NULL DEFAULT 'receiving'
                    CHECK (state IN ('receiving', 'complete', 'failed')),
    error           text,
    -- where the bytes are: 'local' (a part file) or 's3' (multipart parts and a tail object)
    backend         text NOT NULL CHECK (backend IN ('local', 's3')),
    s3_upload_id    text,
    s3_parts        jsonb NOT NULL DEFAULT '[]'::jsonb,
    parts_bytes     bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at      timestamptz NOT NULL,
    CHECK (upload_offset BETWEEN 0 AND upload_length),
    CHECK (parts_bytes BETWEEN 0 AND upload_offset)
);
CREATE INDEX resumable_uploads_unfinished ON resumable_uploads (owner_id)
    WHERE state = 'receiving';
CREATE INDEX resumable_uploads_expiry ON resumable_uploads (expires_at);
