"""Pure decision logic: types, policy, validation, rate limiting, reconciliation.

Stdlib only. No asyncio, no I/O, no clock reads, no pydantic: time comes in as an argument.
A test (tests/test_architecture.py) enforces this.
"""
