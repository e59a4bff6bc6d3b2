"""Server-rendered pages of the production loop (audits, models and runs, drift)."""
