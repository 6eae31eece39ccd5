//! The conversion webhook: ConversionReview handling ([`convert`]) and its certificates
//! ([`certs`]). The HTTPS server itself is in [`crate::http`].

pub mod certs;
pub mod convert;
