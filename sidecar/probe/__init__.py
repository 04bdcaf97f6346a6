"""`sidecar probe`: every assumption the sidecar makes about the exchange, checked against the one it
is pointed at (DESIGN §4.1; docs/emulator.md lists each unconfirmed point with its check).

`runner` runs a probe; `report` names the checks and renders results; the `*_checks` modules and
`tickers` hold one function per named check; `sockets`, `context` and `orders` are the thin I/O
they share. The probe uses the sidecar's own adapters (`sidecar.bybit`), never the service.
"""
