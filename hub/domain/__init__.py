"""The pure domain: lifecycle table, engine, effects, rota, load, deadlines.

Imports nothing of faust, aiokafka or aiohttp (tests/test_architecture.py).
"""
