"""Types, the Guard pipeline, scoring and policy."""
