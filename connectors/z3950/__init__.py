"""Z39.50 client for holdings look-ups: codec (sans-IO) and an asyncio client."""
