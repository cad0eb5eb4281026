//! Standard Webhooks signatures for Herald: see the crate README.
