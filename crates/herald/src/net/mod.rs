//! Outbound networking: which addresses Herald may call ([`ssrf`]) and the
//! connector that enforces it on every connection ([`connector`]).

pub mod connector;
pub mod ssrf;
