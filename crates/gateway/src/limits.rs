//! The fixed limits on an inbound request, part of the error contract: the connection and the
//! server enforce them, and [`crate::problem::ErrorAnswer`] describes the answers they give.

/// Longest request-target accepted (longer: 414).
pub const MAX_URI_LEN: usize = 8 * 1024;
/// Most headers accepted in one request head (more: 431).
pub const MAX_HEADERS: usize = 100;
/// Largest request head accepted (larger: 431).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
