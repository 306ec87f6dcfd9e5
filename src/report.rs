//! The one place that prints user-facing errors and maps them to exit codes.
