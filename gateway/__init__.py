"""Gateway layer (``s2s.gateway``): the FastAPI service and web page in front of Triton."""
