"""NCIP 2.0 (and tolerant NCIP 1.0 reading): the Alma peer-to-peer profile."""
