"""Simulated devices and a local broker for ``linli demo`` and the tests only.

Nothing outside the demo and the tests imports this package.
"""
