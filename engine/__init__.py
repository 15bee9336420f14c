"""The engine: runs a job's pipeline with real ffmpeg, records every step in the log."""
