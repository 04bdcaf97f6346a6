"""Core tests: the pure decision code (validation, rate limits, reconciliation)."""
