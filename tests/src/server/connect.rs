//! The WebSocket upgrade request: path, query params, `vsn` and the auth token.

use std::collections::BTreeMap;

use phx_proto::{ServerSerializer, V1Json, V2Json};

use super::config::{ConnectAuth, ServerConfig};

/// The prefix of the `Sec-WebSocket-Protocol` entry that carries the auth token.
pub const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";

/// The parts of an upgrade request the server looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Request path and query, such as `/socket/websocket?token=secret&vsn=2.0.0`.
    pub target: String,
    /// The `Sec-WebSocket-Protocol` header value, if sent (several headers joined with `,`).
    pub protocols: Option<String>,
    /// The other headers, names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
}

impl ConnectRequest {
    /// A request without a `Sec-WebSocket-Protocol` header.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            protocols: None,
            headers: Vec::new(),
        }
    }

    /// The same request with a `Sec-WebSocket-Protocol` header.
    pub fn with_protocols(mut self, protocols: impl Into<String>) -> Self {
        self.protocols = Some(protocols.into());
        self
    }
}

/// The serializer negotiated from `vsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    /// `vsn` absent or `1.0.x`: JSON objects.
    V1,
    /// `vsn` `2.0.x`: JSON arrays and binary frames.
    V2,
}

impl Vsn {
    /// The codec for this version.
    pub fn serializer(self) -> &'static dyn ServerSerializer {
        match self {
            Self::V1 => &V1Json,
            Self::V2 => &V2Json,
        }
    }
}

/// A query parameter as Plug decodes it, reduced to what the server checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// A plain `key=value` (percent-decoded; not UTF-8 bytes are replaced).
    Str(String),
    /// A nested or list parameter (`key[...]=...`), never equal to a string.
    Nested,
}

/// What `connect/3` sees: the decoded params and the auth token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// Query parameters by name (the last occurrence wins, as in Plug).
    pub params: BTreeMap<String, Param>,
    /// The token from `Sec-WebSocket-Protocol`, decoded.
    pub auth_token: Option<Vec<u8>>,
    /// The request's other headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl ConnectInfo {
    /// A header's value (`name` in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A string parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self.params.get(name) {
            Some(Param::Str(s)) => Some(s),
            _ => None,
        }
    }
}

/// A connection the server took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The subprotocol to answer in `Sec-WebSocket-Protocol` (`phoenix` when offered).
    pub protocol: Option<&'static str>,
    /// The negotiated serializer.
    pub vsn: Vsn,
}

/// A handshake the server refused, with the HTTP status to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// 403 (connect refused, bad `vsn`, unacceptable subprotocol), 404 (wrong path), 400 (bad
    /// query), 500 (undecodable auth token, connection id in use) or 503
    /// ([`Server::refuse_connects_until`](super::Server::refuse_connects_until)).
    pub status: u16,
}

/// Runs every check of a handshake except the time-dependent ones.
pub(super) fn check(config: &ServerConfig, req: &ConnectRequest) -> Result<Accepted, Refused> {
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (req.target.as_str(), ""),
    };
    if path != config.path {
        return Err(Refused { status: 404 });
    }
    let params = parse_query(query).ok_or(Refused { status: 400 })?;
    let (auth_token, protocol) = if config.auth_token {
        subprotocols(req.protocols.as_deref())?
    } else {
        (None, None)
    };
    let vsn = match params.get("vsn") {
        None => Vsn::V1,
        Some(Param::Str(v)) => negotiate(v).ok_or(Refused { status: 403 })?,
        Some(Param::Nested) => return Err(Refused { status: 403 }),
    };
    let info = ConnectInfo {
        params,
        auth_token,
        headers: req.headers.clone(),
    };
    let ok = match &config.auth {
        ConnectAuth::AcceptAll => true,
        ConnectAuth::Secret(secret) => {
            info.param("token") == Some(secret.as_str())
                || info.auth_token.as_deref() == Some(secret.as_bytes())
        }
        ConnectAuth::Custom(f) => f(&info),
    };
    if !ok {
        return Err(Refused { status: 403 });
    }
    Ok(Accepted { protocol, vsn })
}

/// Splits the subprotocol offer: takes out the auth token entry (when exactly one is offered)
/// and selects `phoenix` from what remains. An offer left with entries but no `phoenix` is
/// refused with 403; a token that is not standard base64 gives 500 (Phoenix raises).
fn subprotocols(header: Option<&str>) -> Result<(Option<Vec<u8>>, Option<&'static str>), Refused> {
    let Some(header) = header else {
        return Ok((None, None));
    };
    let entries: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let tokens = entries
        .iter()
        .filter(|e| e.starts_with(AUTH_TOKEN_PREFIX))
        .count();
    let (token, rest): (Option<Vec<u8>>, Vec<&str>) = if tokens == 1 {
        let mut token = None;
        let mut rest = Vec::new();
        for e in entries {
            match e.strip_prefix(AUTH_TOKEN_PREFIX) {
                Some(enc) => token = Some(decode_base64(enc).ok_or(Refused { status: 500 })?),
                None => rest.push(e),
            }
        }
        (token, rest)
    } else {
        (None, entries)
    };
    if rest.is_empty() {
        return Ok((token, None));
    }
    if rest.contains(&"phoenix") {
        Ok((token, Some("phoenix")))
    } else {
        Err(Refused { status: 403 })
    }
}

/// Matches `vsn` against `~> 1.0.0` (V1) and `~> 2.0.0` (V2), as Elixir's `Version` does.
fn negotiate(vsn: &str) -> Option<Vsn> {
    let v = parse_version(vsn)?;
    // `~> X.0.0` is `>= X.0.0 and < X.1.0`; a pre-release of X.0.0 sorts below X.0.0.
    let in_range = |major| v.major == major && v.minor == 0 && !(v.patch == 0 && v.pre);
    if in_range(1) {
        Some(Vsn::V1)
    } else if in_range(2) {
        Some(Vsn::V2)
    } else {
        None
    }
}

struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: bool,
}

/// Parses `MAJOR.MINOR.PATCH[-pre][+build]` strictly (no leading zeros, as semver says).
fn parse_version(s: &str) -> Option<Version> {
    let (s, build) = match s.split_once('+') {
        Some((v, b)) => (v, Some(b)),
        None => (s, None),
    };
    if let Some(build) = build
        && !identifiers_ok(build, false)
    {
        return None;
    }
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (s, None),
    };
    if let Some(pre) = pre
        && !identifiers_ok(pre, true)
    {
        return None;
    }
    let mut parts = core.split('.');
    let mut num = || -> Option<u64> {
        let p = parts.next()?;
        if p.is_empty()
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return None;
        }
        p.parse().ok()
    };
    let (major, minor, patch) = (num()?, num()?, num()?);
    if parts.next().is_some() {
        return None;
    }
    Some(Version {
        major,
        minor,
        patch,
        pre: pre.is_some(),
    })
}

fn identifiers_ok(s: &str, numeric_no_leading_zero: bool) -> bool {
    s.split('.').all(|id| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !(numeric_no_leading_zero
                && id.len() > 1
                && id.starts_with('0')
                && id.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Decodes a query string the way Plug does for what matters here: `&`-separated pairs,
/// `+` as space, `%XX` escapes. `None` when an escape is malformed (Plug answers 400).
pub(super) fn parse_query(query: &str) -> Option<BTreeMap<String, Param>> {
    let mut params = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k)?;
        let value = percent_decode(v)?;
        let key = String::from_utf8_lossy(&key).into_owned();
        match key.split_once('[') {
            Some((base, _)) if !base.is_empty() => {
                params.insert(base.to_owned(), Param::Nested);
            }
            _ => {
                params.insert(
                    key,
                    Param::Str(String::from_utf8_lossy(&value).into_owned()),
                );
            }
        }
    }
    Some(params)
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_val(bytes.next()?)?;
                let lo = hex_val(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b => out.push(b),
        }
    }
    Some(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const STD_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Standard base64 with optional padding, as `Base.decode64!(s, padding: false)` accepts it.
pub(super) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for b in s.bytes() {
        let v = STD_ALPHABET.iter().position(|&a| a == b)?;
        acc = (acc << 6) | u32::try_from(v).ok()?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// Standard base64 without padding: how a client puts its token in `Sec-WebSocket-Protocol`.
pub fn encode_base64(bytes: &[u8]) -> String {
    encode_with(bytes, STD_ALPHABET)
}

/// URL-safe base64 without padding (the alphabet of Phoenix presence `phx_ref`s).
pub(super) fn encode_base64url(bytes: &[u8]) -> String {
    encode_with(bytes, URL_ALPHABET)
}

fn encode_with(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(alphabet[idx as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_default(target: &str, protocols: Option<&str>) -> Result<Accepted, Refused> {
        let req = ConnectRequest {
            target: target.to_owned(),
            protocols: protocols.map(str::to_owned),
            headers: Vec::new(),
        };
        check(&ServerConfig::default(), &req)
    }

    #[test]
    fn vsn_negotiation_follows_elixir_version_requirements() {
        let v = |vsn: &str| negotiate(vsn);
        assert_eq!(v("1.0.0"), Some(Vsn::V1));
        assert_eq!(v("1.0.7"), Some(Vsn::V1));
        assert_eq!(v("2.0.0"), Some(Vsn::V2));
        assert_eq!(v("2.0.1+build.5"), Some(Vsn::V2));
        assert_eq!(v("2.0.1-rc.1"), Some(Vsn::V2));
        assert_eq!(v("2.0.0-rc.1"), None, "pre-release of 2.0.0 sorts below it");
        assert_eq!(v("2.1.0"), None);
        assert_eq!(v("1.1.0"), None);
        assert_eq!(v("3.0.0"), None);
        assert_eq!(v("2.0"), None);
        assert_eq!(v("02.0.0"), None);
        assert_eq!(v("2.0.0.0"), None);
        assert_eq!(v(""), None);
        assert_eq!(v("2.0.0-"), None);
    }

    #[test]
    fn absent_vsn_means_v1_and_nested_vsn_is_refused() {
        assert_eq!(
            check_default("/socket/websocket?token=secret", None).map(|a| a.vsn),
            Ok(Vsn::V1)
        );
        assert_eq!(
            check_default("/socket/websocket?token=secret&vsn[]=x", None),
            Err(Refused { status: 403 })
        );
        assert_eq!(
            check_default("/socket/websocket?token=secret&vsn=2.1.0", None),
            Err(Refused { status: 403 })
        );
    }

    #[test]
    fn token_param_is_percent_decoded() {
        let cfg = ServerConfig {
            auth: ConnectAuth::Secret("a b&c".to_owned()),
            ..ServerConfig::default()
        };
        let req = ConnectRequest::new("/socket/websocket?token=a+b%26c&vsn=2.0.0");
        assert!(check(&cfg, &req).is_ok());
        let req = ConnectRequest::new("/socket/websocket?token=a%2Gb");
        assert_eq!(check(&cfg, &req), Err(Refused { status: 400 }));
    }

    #[test]
    fn wrong_path_is_404_and_wrong_token_403() {
        assert_eq!(
            check_default("/socket/longpoll?token=secret", None),
            Err(Refused { status: 404 })
        );
        assert_eq!(
            check_default("/socket/websocket?token=wrong&vsn=2.0.0", None),
            Err(Refused { status: 403 })
        );
        assert_eq!(
            check_default("/socket/websocket?vsn=2.0.0", None),
            Err(Refused { status: 403 })
        );
    }

    #[test]
    fn auth_token_in_subprotocols_selects_phoenix() {
        let ok = check_default(
            "/socket/websocket?vsn=2.0.0",
            Some("phoenix, base64url.bearer.phx.c2VjcmV0"),
        )
        .unwrap();
        assert_eq!(ok.protocol, Some("phoenix"));
        assert_eq!(ok.vsn, Vsn::V2);
        // Token without `phoenix`: accepted (token valid), nothing selected.
        let ok = check_default(
            "/socket/websocket?vsn=2.0.0",
            Some("base64url.bearer.phx.c2VjcmV0"),
        )
        .unwrap();
        assert_eq!(ok.protocol, None);
        // Wrong token.
        assert_eq!(
            check_default(
                "/socket/websocket?vsn=2.0.0",
                Some("phoenix,base64url.bearer.phx.d3Jvbmc")
            ),
            Err(Refused { status: 403 })
        );
        // URL-safe characters make Base.decode64! raise.
        assert_eq!(
            check_default(
                "/socket/websocket?vsn=2.0.0",
                Some("phoenix,base64url.bearer.phx.c2-j_mV0")
            ),
            Err(Refused { status: 500 })
        );
        // Offered subprotocols without phoenix are refused.
        assert_eq!(
            check_default("/socket/websocket?token=secret", Some("mqtt")),
            Err(Refused { status: 403 })
        );
        assert_eq!(
            check_default("/socket/websocket?token=secret", Some("mqtt, phoenix"))
                .unwrap()
                .protocol,
            Some("phoenix")
        );
    }

    #[test]
    fn subprotocol_header_is_ignored_without_auth_token_support() {
        let cfg = ServerConfig {
            auth_token: false,
            ..ServerConfig::default()
        };
        let req = ConnectRequest::new("/socket/websocket?vsn=2.0.0")
            .with_protocols("phoenix,base64url.bearer.phx.c2VjcmV0");
        assert_eq!(check(&cfg, &req), Err(Refused { status: 403 }));
        let req = ConnectRequest::new("/socket/websocket?token=secret").with_protocols("mqtt");
        assert_eq!(check(&cfg, &req).unwrap().protocol, None);
    }

    #[test]
    fn custom_and_accept_all_auth() {
        let cfg = ServerConfig {
            auth: ConnectAuth::AcceptAll,
            ..ServerConfig::default()
        };
        assert!(check(&cfg, &ConnectRequest::new("/socket/websocket")).is_ok());
        let cfg = ServerConfig {
            auth: ConnectAuth::Custom(std::sync::Arc::new(|info: &ConnectInfo| {
                info.param("user") == Some("root")
            })),
            ..ServerConfig::default()
        };
        assert!(check(&cfg, &ConnectRequest::new("/socket/websocket?user=root")).is_ok());
        assert_eq!(
            check(&cfg, &ConnectRequest::new("/socket/websocket?user=bob")),
            Err(Refused { status: 403 })
        );
    }

    #[test]
    fn base64_round_trips() {
        for len in 0..20u8 {
            let data: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(200))
                .collect();
            assert_eq!(decode_base64(&encode_base64(&data)), Some(data));
        }
        assert_eq!(encode_base64(b"1234"), "MTIzNA");
        assert_eq!(encode_base64(b"secret"), "c2VjcmV0");
        assert_eq!(decode_base64("MTIzNA=="), Some(b"1234".to_vec()));
        assert_eq!(decode_base64("MTIzN"), None);
        assert_eq!(encode_base64url(&[0xfb, 0xff]), "-_8");
    }
}
