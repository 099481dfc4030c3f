//! Client authentication (contract section 5).
