"""Ingest: validation (``validate``), sequence and epoch rules (``sequence``), time correction
(``timefix``), the journal's storage (``journal``) and the transaction around them (``core``).

Kept free of imports so that the projections can use the journal without a cycle.
"""
