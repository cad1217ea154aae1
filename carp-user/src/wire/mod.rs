//! The CARP wire format: the 36-byte advertisement header, its internet
//! checksum, and the SHA-1 HMAC that authenticates it, byte for byte as
//! OpenBSD's carp(4). Pure: no I/O.

mod advert;
mod checksum;
mod hmac;

pub use advert::{Advertisement, DecodeError};
pub use checksum::internet_checksum;
pub use hmac::{Authenticator, Key, KeyError, MAX_PASSPHRASE};
