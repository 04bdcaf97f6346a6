"""Bybit order-safety sidecar: validate, rate-limit, journal, send and verify order amendments."""

__version__ = "0.1.0"
__all__ = ["__version__"]
