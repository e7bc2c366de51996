-- A clip's viewer list pages newest first by (viewed_at, viewer): read it in that order.
CREATE INDEX clip_views_latest ON clip_views (clip_id, viewed_at DESC, viewer_id DESC);
