"""Pure folds over the job log: events -> job state and job-list rows. No I/O."""
