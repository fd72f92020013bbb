"""Everything that knows Kafka, faust, aiokafka and the embedded broker's quirks.

It knows nothing of loans (tests/test_architecture.py)."""
