//! cli (placeholder, being built).
