"""The OgPgy framework: DI, gRPC platform, persistence, resilience. Knows nothing about banking."""
