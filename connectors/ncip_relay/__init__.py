"""NCIP broker relay: brokers' circulation calls relayed to member libraries' NCIP responders."""
