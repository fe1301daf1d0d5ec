"""The composition root: which contexts run in which process, and the `ogpgy` command line.

The only package allowed to import every context (services.X never imports services.Y).
"""
