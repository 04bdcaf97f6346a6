"""Emulator tests: the Bybit V5 emulator on its own, as an independent witness."""
