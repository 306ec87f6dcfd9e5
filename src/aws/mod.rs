//! aws (placeholder, being built).
