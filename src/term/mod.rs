//! term (placeholder, being built).
