//! Simple matches.
