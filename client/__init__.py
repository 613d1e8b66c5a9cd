"""Client layer (``s2s.client``): sends videos to the Triton ensemble over gRPC or HTTP and muxes the sound back."""
