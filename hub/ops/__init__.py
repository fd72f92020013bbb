"""The read side and staff actions, shared by the CLI and the console.

The operators' index and the console; never imports the CLI (tests/test_architecture.py)."""
