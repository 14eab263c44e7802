"""Operating the gateway: readiness (`readiness.py`) and drain (`drain.py`); docs/operations.md."""
