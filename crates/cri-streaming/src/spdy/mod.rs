//! SPDY/3.1 as used by kubelet streaming clients: framing ([`frame`]) and sessions ([`conn`]).

pub mod conn;
pub mod frame;

pub use conn::{Connection, Role, Stream, StreamReader, StreamWriter};
pub use frame::{Frame, FrameError, Headers};
