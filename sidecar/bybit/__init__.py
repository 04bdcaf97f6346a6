"""Bybit V5 exchange layer: wire models, codec, signing, retCode table (pure) and the asyncio
adapters (trade socket, private stream, market data, REST read-backs).

Must not be imported by `sidecar.core`, `sidecar.emulator` or `sidecar.mcp_server`.
"""

__all__: list[str] = []
