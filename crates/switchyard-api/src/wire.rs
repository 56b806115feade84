//! Schema rules for the resource strings that reach the wire as written: paths go into
//! request lines, names and values into header lines. The API server refuses a resource
//! that breaks them; compile checks the same again (`switchyard_compile::validate`), so a
//! folder of YAML in standalone mode, which no API server checks, gets the same answer.

/// A path written into a request line (active health checks, connectivity probes,
/// rewrites): `/` followed by visible ASCII (0x21-0x7E). No space, CR, LF or NUL, so it
/// cannot end the request line early and smuggle a second request onto the connection.
pub const WIRE_PATH_PATTERN: &str = r"^/[!-~]*$";
/// Longest such path.
pub const MAX_WIRE_PATH: u32 = 1024;

/// A string written into a header line (a header name or value, a Host header): no CR,
/// LF or NUL, the bytes that would end the line and let the rest pose as a header.
pub const HEADER_TEXT_PATTERN: &str = r"^[^\r\n\x00]*$";
/// Longest header value (compile's limit too).
pub const MAX_HEADER_VALUE: u32 = 4096;
/// Longest Host-header style name: a DNS name (253) with `:port`.
pub const MAX_HOST_HEADER: u32 = 259;
