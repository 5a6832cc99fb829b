"""Reading events in: raw batches, dataset formats, validation and the quarantine file."""
