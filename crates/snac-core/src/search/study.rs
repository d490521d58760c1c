//! Stub.
pub struct Study;
pub struct Trial;
