"""The shared kernel: the bank's value types as every contract carries them (ogpgy.type.v1)."""
