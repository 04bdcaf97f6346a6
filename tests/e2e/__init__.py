"""End-to-end tests: the real emulator, service and journal; nothing mocked."""
