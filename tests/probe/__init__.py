"""Probe tests: the probe's judgements and its command line."""
