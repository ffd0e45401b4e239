"""The manufacturing model: what workflows record about the plant (issue 6, being built).

So far: the double-entry ledger (accounts, immutable journal entries whose lines balance,
corrections by reversal) that material issues, labour and overhead absorption, receipts,
scrap and order closes post to.
"""
