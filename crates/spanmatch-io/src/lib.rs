//! IO
