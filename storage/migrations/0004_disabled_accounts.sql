-- An account an admin disabled: its tokens stop working, it cannot log in, its content stays.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
