"""Running jobs: decide, append, run the pipeline's steps, recover after a restart."""
