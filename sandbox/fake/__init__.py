"""An in-process dummy backend for fast unit tests (no engine, nothing executed)."""
