"""The bounded contexts of OgPgy Bank. A context never imports another: stubs only."""
