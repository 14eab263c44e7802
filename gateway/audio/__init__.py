"""Audio formats and PCM helpers, shared by the media path and the live models.

Names the sample rates and frame sizes once (`formats`) and converts PCM with PyAV
(`pcm`). Imports PyAV and numpy; nothing from aiortc, HTTP or ADK.
"""
