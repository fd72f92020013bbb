"""A worker's long-lived services: agents, gateway, relay, partner queues.

With their settings, logs and metrics.
"""
