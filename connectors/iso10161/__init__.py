"""ISO 10161 ILL (BER over TCP): the ASN.1 compiled with asn1tools, and the sans-IO codec."""
