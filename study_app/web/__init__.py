"""The study app's web side: Streamlit pages, synchronised player, WebXR headset page, server."""
