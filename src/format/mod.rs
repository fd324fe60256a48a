//! Kafka's on-disk formats: parse (with nom, zero-copy) and verify.
