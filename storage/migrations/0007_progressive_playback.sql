-- Videos playable while they transcode (HLS EVENT playlists published segment by segment),
-- and the short animated preview feeds show.
ALTER TABLE videos
    ADD COLUMN playable_at timestamptz,
    ADD COLUMN preview_key text;
