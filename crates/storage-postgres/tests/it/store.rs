//! What is particular to the PostgreSQL backend.
