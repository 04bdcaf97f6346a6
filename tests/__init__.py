"""The test suite, a package so its helper modules import by qualified name (tests.e2e.e2e_kit) for
pytest and mypy alike."""
