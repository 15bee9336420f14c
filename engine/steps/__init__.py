"""The pipeline's steps: plain async functions over a StepContext."""
