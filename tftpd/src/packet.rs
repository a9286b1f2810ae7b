//! TFTP packets (RFC 1350, RFC 2347 options). Parsing never panics on network input.

use std::fmt;

/// Opcodes.
pub const RRQ: u16 = 1;
pub const WRQ: u16 = 2;
pub const DATA: u16 = 3;
pub const ACK: u16 = 4;
pub const ERROR: u16 = 5;
pub const OACK: u16 = 6;

/// Longest file name we accept in a request (tftp-hpa accepts about the same).
pub const MAX_FILENAME: usize = 1024;

/// Transfer mode of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
}

/// A read or write request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub write: bool,
    pub filename: String,
    pub mode: Mode,
    /// Options in the order the client sent them, names lowercased.
    pub options: Vec<(String, String)>,
}

/// A packet a transfer receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Request(Request),
    Data { block: u16, data: &'a [u8] },
    Ack { block: u16 },
    Error { code: u16, message: String },
    Oack(Vec<(String, String)>),
}

/// TFTP error codes (RFC 1350, RFC 2347).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTid = 5,
    FileExists = 6,
    NoSuchUser = 7,
    OptionRefused = 8,
}

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    TooShort,
    BadOpcode(u16),
    Unterminated,
    BadMode,
    NotUtf8,
    FilenameTooLong,
    Empty,
}

impl ParseError {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::TooShort => "too_short",
            ParseError::BadOpcode(_) => "bad_opcode",
            ParseError::Unterminated => "unterminated",
            ParseError::BadMode => "bad_mode",
            ParseError::NotUtf8 => "not_utf8",
            ParseError::FilenameTooLong => "filename_too_long",
            ParseError::Empty => "empty_filename",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooShort => write!(f, "packet too short"),
            ParseError::BadOpcode(op) => write!(f, "unknown opcode {op}"),
            ParseError::Unterminated => write!(f, "string field without NUL terminator"),
            ParseError::BadMode => write!(f, "unknown transfer mode"),
            ParseError::NotUtf8 => write!(f, "field is not valid text"),
            ParseError::FilenameTooLong => write!(f, "file name too long"),
            ParseError::Empty => write!(f, "empty file name"),
        }
    }
}

fn split_strings(mut rest: &[u8]) -> Result<Vec<&[u8]>, ParseError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(ParseError::Unterminated)?;
        out.push(&rest[..nul]);
        rest = &rest[nul + 1..];
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, ParseError> {
    // File names are bytes on the wire; we only serve names that are valid UTF-8.
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| ParseError::NotUtf8)
}

fn parse_options(fields: &[&[u8]]) -> Result<Vec<(String, String)>, ParseError> {
    let mut opts = Vec::new();
    // an odd trailing field (name without value) is ignored, as tftp-hpa does
    for pair in fields.chunks_exact(2) {
        let name = text(pair[0])?.to_ascii_lowercase();
        let value = text(pair[1])?;
        opts.push((name, value));
    }
    Ok(opts)
}

/// Parses one datagram.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, ParseError> {
    if buf.len() < 2 {
        return Err(ParseError::TooShort);
    }
    let op = u16::from_be_bytes([buf[0], buf[1]]);
    let body = &buf[2..];
    match op {
        RRQ | WRQ => {
            let fields = split_strings(body)?;
            if fields.len() < 2 {
                return Err(ParseError::Unterminated);
            }
            if fields[0].is_empty() {
                return Err(ParseError::Empty);
            }
            if fields[0].len() > MAX_FILENAME {
                return Err(ParseError::FilenameTooLong);
            }
            let filename = text(fields[0])?;
            let mode = match text(fields[1])?.to_ascii_lowercase().as_str() {
                "octet" => Mode::Octet,
                "netascii" => Mode::Netascii,
                _ => return Err(ParseError::BadMode),
            };
            Ok(Packet::Request(Request {
                write: op == WRQ,
                filename,
                mode,
                options: parse_options(&fields[2..])?,
            }))
        }
        DATA => {
            if body.len() < 2 {
                return Err(ParseError::TooShort);
            }
            Ok(Packet::Data {
                block: u16::from_be_bytes([body[0], body[1]]),
                data: &body[2..],
            })
        }
        ACK => {
            if body.len() < 2 {
                return Err(ParseError::TooShort);
            }
            Ok(Packet::Ack {
                block: u16::from_be_bytes([body[0], body[1]]),
            })
        }
        ERROR => {
            if body.len() < 2 {
                return Err(ParseError::TooShort);
            }
            let code = u16::from_be_bytes([body[0], body[1]]);
            let msg = &body[2..];
            let end = msg.iter().position(|&b| b == 0).unwrap_or(msg.len());
            Ok(Packet::Error {
                code,
                message: String::from_utf8_lossy(&msg[..end]).into_owned(),
            })
        }
        OACK => Ok(Packet::Oack(parse_options(&split_strings(body)?)?)),
        other => Err(ParseError::BadOpcode(other)),
    }
}

/// Writes a DATA header into the first 4 bytes of `buf`.
pub fn put_data_header(buf: &mut [u8], block: u16) {
    buf[..2].copy_from_slice(&DATA.to_be_bytes());
    buf[2..4].copy_from_slice(&block.to_be_bytes());
}

/// An ACK packet.
pub fn ack(block: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&ACK.to_be_bytes());
    b[2..].copy_from_slice(&block.to_be_bytes());
    b
}

/// An ERROR packet.
pub fn error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + message.len());
    b.extend_from_slice(&ERROR.to_be_bytes());
    b.extend_from_slice(&(code as u16).to_be_bytes());
    b.extend_from_slice(message.as_bytes());
    b.push(0);
    b
}

/// An OACK packet.
pub fn oack(options: &[(String, String)]) -> Vec<u8> {
    let mut b = OACK.to_be_bytes().to_vec();
    for (k, v) in options {
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b
}

/// A request packet (used by tests and the benchmark client).
pub fn request(write: bool, filename: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut b = if write { WRQ } else { RRQ }.to_be_bytes().to_vec();
    for s in [filename, mode] {
        b.extend_from_slice(s.as_bytes());
        b.push(0);
    }
    for (k, v) in options {
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b
}

/// Converts octets to netascii (LF → CR LF, CR → CR NUL), carrying a pending CR expansion
/// across calls through `pending`.
#[derive(Default, Debug)]
pub struct NetasciiEncoder {
    pending: Option<u8>,
}

impl NetasciiEncoder {
    /// Fills `out` from `input`; returns (bytes consumed from input, bytes written).
    pub fn encode(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        let (mut i, mut o) = (0, 0);
        while o < out.len() {
            if let Some(p) = self.pending.take() {
                out[o] = p;
                o += 1;
                continue;
            }
            let Some(&c) = input.get(i) else { break };
            i += 1;
            match c {
                b'\n' => {
                    out[o] = b'\r';
                    self.pending = Some(b'\n');
                }
                b'\r' => {
                    out[o] = b'\r';
                    self.pending = Some(0);
                }
                _ => out[o] = c,
            }
            o += 1;
        }
        (i, o)
    }

    /// Whether an expansion byte is still owed.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }
}

/// Converts netascii back to octets (CR LF → LF, CR NUL → CR) for write requests.
#[derive(Default, Debug)]
pub struct NetasciiDecoder {
    cr: bool,
}

impl NetasciiDecoder {
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &c in input {
            if self.cr {
                self.cr = false;
                match c {
                    b'\n' => out.push(b'\n'),
                    0 => out.push(b'\r'),
                    b'\r' => {
                        out.push(b'\r');
                        self.cr = true;
                    }
                    other => {
                        out.push(b'\r');
                        out.push(other);
                    }
                }
            } else if c == b'\r' {
                self.cr = true;
            } else {
                out.push(c);
            }
        }
    }

    /// Flushes a trailing lone CR at end of file.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rrq_with_options() {
        let p = request(
            false,
            "pxelinux.0",
            "OCTET",
            &[("BlkSize", "1468"), ("tsize", "0")],
        );
        let Ok(Packet::Request(r)) = parse(&p) else {
            panic!()
        };
        assert!(!r.write);
        assert_eq!(r.filename, "pxelinux.0");
        assert_eq!(r.mode, Mode::Octet);
        assert_eq!(
            r.options,
            vec![
                ("blksize".into(), "1468".into()),
                ("tsize".into(), "0".into())
            ]
        );
    }

    #[test]
    fn hostile_packets_are_errors_not_panics() {
        assert_eq!(parse(&[]), Err(ParseError::TooShort));
        assert_eq!(parse(&[0]), Err(ParseError::TooShort));
        assert_eq!(parse(&[0, 1, b'a']), Err(ParseError::Unterminated));
        assert_eq!(
            parse(b"\x00\x01pxelinux.0\x00"),
            Err(ParseError::Unterminated)
        );
        assert_eq!(parse(b"\x00\x01x\x00mail\x00"), Err(ParseError::BadMode));
        assert_eq!(parse(b"\x00\x01\x00octet\x00"), Err(ParseError::Empty));
        assert_eq!(parse(&[0, 3, 1]), Err(ParseError::TooShort));
        assert_eq!(parse(&[0, 4]), Err(ParseError::TooShort));
        assert_eq!(
            parse(&[0xff, 0xff, 1, 2]),
            Err(ParseError::BadOpcode(0xffff))
        );
        assert_eq!(
            parse(b"\x00\x01\xff\xfe\x00octet\x00"),
            Err(ParseError::NotUtf8)
        );
        let long = [&[0u8, 1][..], &[b'A'; 2000], b"\0octet\0"].concat();
        assert_eq!(parse(&long), Err(ParseError::FilenameTooLong));
        // every prefix of a valid request parses or errs cleanly
        let p = request(true, "a/b", "netascii", &[("windowsize", "16")]);
        for n in 0..p.len() {
            let _ = parse(&p[..n]);
        }
    }

    #[test]
    fn netascii_round_trip_across_chunk_boundaries() {
        let input = b"line1\nline2\r\nbare\rend\n".to_vec();
        let mut enc = NetasciiEncoder::default();
        let mut wire = Vec::new();
        let mut i = 0;
        let mut buf = [0u8; 3]; // tiny blocks force the pending byte across calls
        while i < input.len() || enc.has_pending() {
            let (used, n) = enc.encode(&input[i..], &mut buf);
            i += used;
            wire.extend_from_slice(&buf[..n]);
        }
        assert_eq!(wire, b"line1\r\nline2\r\0\r\nbare\r\0end\r\n");
        let mut dec = NetasciiDecoder::default();
        let mut back = Vec::new();
        for chunk in wire.chunks(2) {
            dec.decode(chunk, &mut back);
        }
        dec.finish(&mut back);
        assert_eq!(back, input);
    }
}
