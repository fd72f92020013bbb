"""SRU client for holdings look-ups: codec (sans-IO) and an aiohttp client."""
