"""What the gateway's processes use and count: `/stats` readings (standard library
only: `counters.py`, `process_stats.py`) and the Prometheus instruments and
`/metrics` (`instruments.py`, `exposition.py`: prometheus-client)."""
