"""The error taxonomy (codes, titles, remediations) and the mapping of exceptions onto it."""
