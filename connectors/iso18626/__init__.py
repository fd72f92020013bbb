"""ISO 18626 (XML over HTTP): reads v1.2 and 2021, writes v1.2."""
