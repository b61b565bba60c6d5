"""The proofs: crash injection at every named boundary, concurrency storms, hostile input, independent signers.

Each proof writes what it tried and what held to ``tests/proofs/results/*.json``; ``python -m tests.proofs.report``
renders those into the README's Guarantees table.
"""
