"""Files on disk: atomic writes, a job's folder and artifacts, the data folder's lock."""
