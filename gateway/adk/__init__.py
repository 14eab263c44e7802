"""ADK-facing helpers (session service, Gemini Live settings, resumption): may import
google.adk and google.genai; nothing from aiortc or aiohttp."""
