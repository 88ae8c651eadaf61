"""Text generation: one streamed generation with progress, and the batched trial runner."""
