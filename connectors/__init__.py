"""Protocol connectors: one package per protocol, each a sans-IO codec plus a transport."""
