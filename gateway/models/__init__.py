"""ADK live models that ship with the gateway (ADK plugins: may import google.adk)."""
