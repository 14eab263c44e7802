"""adk-webrtc-gateway: a WebRTC media gateway for Google ADK live agents."""
