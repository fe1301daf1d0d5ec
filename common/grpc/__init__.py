"""The gRPC platform: one way to serve contexts and one way to call them."""
