"""Coordination tests: the local and Redis coordinators against a real redis-server."""
