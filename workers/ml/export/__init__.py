"""Export for deployment: variants (merged, int8, ONNX), measurements, the bundle."""
