"""Payment context: internal and external payments, fraud screening, store-and-forward."""
