"""What the gateway's processes use and count: `/stats` readings (standard library
only: `counters.py`, `process_stats.py`), the Prometheus instruments and `/metrics`
(`instruments.py`, `exposition.py`: prometheus-client), and OpenTelemetry traces of
calls (`tracing.py`, `call_trace.py`: opentelemetry, the agent seam)."""
