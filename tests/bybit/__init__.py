"""Adapter tests: the Bybit client code against the emulator on a loopback port."""
