//! Sampled-coordinate compatibility protocol.
