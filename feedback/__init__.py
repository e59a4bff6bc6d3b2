"""The production loop: ingest, scoring, selection, training-set versions, training, the model registry."""
