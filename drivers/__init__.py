"""Device drivers for linli-edge: transports (serial, I2C, GPIO) and protocols.

This package knows nothing of the agent in ``edge``; it can be used on its own.
"""
