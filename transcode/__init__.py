"""Probe, ladder planning, FFmpeg commands, the subprocess pool and the durable job queue."""
