"""Export for deployment: variants (merged, int8, ONNX), their measurements, the download
bundle."""
