"""AuditEvents in an append-only RFC 9162 Merkle-tree log: write, verify, prove, search, export."""
