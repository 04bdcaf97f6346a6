"""The reliability suite (not tests): long soaks of bad input, injected faults, load and kill -9
(docs/reliability.md). `python -m reliability [options]` prints one JSON object on stdout."""
