//! transport (placeholder, being built).
