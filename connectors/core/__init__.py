"""The core every part of rshub depends on: the canonical model, the records on the topics,
the directory, and the connector contract. It imports nothing of the hub's runtime and no
connector."""
