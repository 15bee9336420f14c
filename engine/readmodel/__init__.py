"""Read models kept beside the log: the job list (the jobs table) and step-time estimates."""
