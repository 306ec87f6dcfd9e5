//! emulator (placeholder, being built).
