//! The route table of the control API. Every control path is built and parsed here.

use std::fmt;

/// `GET`: the status document ([`crate::Status`]).
pub const STATUS: &str = "/v1/status";
/// `GET`: Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// `GET` the gray routes, `POST` one ([`crate::gray::GrayRoute`]), `DELETE` some
/// ([`crate::gray::GrayKey`]).
pub const GRAY: &str = "/v1/gray";
/// The prefix of the drain/enable route.
const VIRTUAL_SERVERS: &str = "/v1/virtual-servers/";
const REAL_SERVERS: &str = "/real-servers/";

/// What a real server route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsAction {
    /// Out of rotation (weight 0; open connections finish), kept until enabled.
    Drain,
    /// Back in rotation once healthy.
    Enable,
}

impl RsAction {
    pub fn verb(self) -> &'static str {
        match self {
            RsAction::Drain => "drain",
            RsAction::Enable => "enable",
        }
    }
}

/// A request the control API understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Status,
    Metrics,
    /// `POST /v1/virtual-servers/{VS}/real-servers/{RS}/{drain|enable}`.
    RealServer {
        virtual_server: String,
        real_server: String,
        action: RsAction,
    },
    /// `GET /v1/gray`.
    GrayList,
    /// `POST /v1/gray`, the route in the body.
    GrayAdd,
    /// `DELETE /v1/gray`, the key in the body.
    GrayDel,
}

/// Why a request matched no route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoRoute {
    /// The path exists, with another method (for 405).
    Method,
    /// No such path (for 404).
    Path,
}

impl Route {
    /// The method and path of this request.
    pub fn method(&self) -> &'static str {
        match self {
            Route::Status | Route::Metrics | Route::GrayList => "GET",
            Route::RealServer { .. } | Route::GrayAdd => "POST",
            Route::GrayDel => "DELETE",
        }
    }

    pub fn path(&self) -> String {
        match self {
            Route::Status => STATUS.to_string(),
            Route::Metrics => METRICS.to_string(),
            Route::GrayList | Route::GrayAdd | Route::GrayDel => GRAY.to_string(),
            Route::RealServer {
                virtual_server,
                real_server,
                action,
            } => format!(
                "{VIRTUAL_SERVERS}{virtual_server}{REAL_SERVERS}{real_server}/{}",
                action.verb()
            ),
        }
    }

    /// The route of a request, by method and path.
    pub fn parse(method: &str, path: &str) -> Result<Route, NoRoute> {
        if path == GRAY {
            return match method {
                "GET" => Ok(Route::GrayList),
                "POST" => Ok(Route::GrayAdd),
                "DELETE" => Ok(Route::GrayDel),
                _ => Err(NoRoute::Method),
            };
        }
        let route = match path {
            STATUS => Route::Status,
            METRICS => Route::Metrics,
            _ => Self::parse_real_server(path).ok_or(NoRoute::Path)?,
        };
        if route.method() == method {
            Ok(route)
        } else {
            Err(NoRoute::Method)
        }
    }

    fn parse_real_server(path: &str) -> Option<Route> {
        let rest = path.strip_prefix(VIRTUAL_SERVERS)?;
        let (vs, rest) = rest.split_once(REAL_SERVERS)?;
        let (rs, verb) = rest.rsplit_once('/')?;
        let action = match verb {
            "drain" => RsAction::Drain,
            "enable" => RsAction::Enable,
            _ => return None,
        };
        if vs.is_empty() || rs.is_empty() || rs.contains('/') {
            return None;
        }
        Some(Route::RealServer {
            virtual_server: vs.to_string(),
            real_server: rs.to_string(),
            action,
        })
    }
}

/// The routes, for a 404 body.
pub struct Usage;

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GET {STATUS}, GET {METRICS}, POST {VIRTUAL_SERVERS}{{VIP:PORT|[VIP6]:PORT|fwmark-N}}{REAL_SERVERS}{{RIP:PORT|[RIP6]:PORT}}/{{drain|enable}}, GET|POST|DELETE {GRAY}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drain route spelled by hand (the literal lives once, in the module above).
    fn vs_path(rest: &str) -> String {
        format!("/v1/{}{rest}", "virtual-servers/")
    }

    fn check(method: &str, path: &str, want: Result<Route, NoRoute>) {
        assert_eq!(Route::parse(method, path), want, "{method} {path}");
        if let Ok(r) = want {
            assert_eq!(r.path(), path);
            assert_eq!(r.method(), method);
        }
    }

    #[test]
    fn routes_parse_and_build_the_same_paths() {
        check("GET", "/v1/status", Ok(Route::Status));
        check("GET", "/metrics", Ok(Route::Metrics));
        for (vs, rs, verb, action) in [
            ("10.0.0.1:80", "10.0.1.1:8080", "drain", RsAction::Drain),
            ("fwmark-7", "10.0.1.2:80", "enable", RsAction::Enable),
            ("10.0.0.1:53/udp", "10.0.1.1:53", "drain", RsAction::Drain),
            (
                "[2001:db8::10]:80",
                "[2001:db8:1::11]:8080",
                "drain",
                RsAction::Drain,
            ),
            (
                "[2001:db8::10]:53/udp",
                "[2001:db8:1::11]:53",
                "enable",
                RsAction::Enable,
            ),
        ] {
            check(
                "POST",
                &vs_path(&format!("{vs}/real-servers/{rs}/{verb}")),
                Ok(Route::RealServer {
                    virtual_server: vs.into(),
                    real_server: rs.into(),
                    action,
                }),
            );
        }
    }

    #[test]
    fn the_gray_path_takes_three_methods() {
        check("GET", "/v1/gray", Ok(Route::GrayList));
        check("POST", "/v1/gray", Ok(Route::GrayAdd));
        check("DELETE", "/v1/gray", Ok(Route::GrayDel));
        check("PUT", "/v1/gray", Err(NoRoute::Method));
        check("GET", "/v1/gray/x", Err(NoRoute::Path));
    }

    #[test]
    fn wrong_methods_and_paths_are_told_apart() {
        check("POST", "/v1/status", Err(NoRoute::Method));
        check(
            "GET",
            &vs_path("a:1/real-servers/b:2/drain"),
            Err(NoRoute::Method),
        );
        check("GET", "/v1/nothing", Err(NoRoute::Path));
        check(
            "POST",
            &vs_path("a:1/real-servers/b:2/delete"),
            Err(NoRoute::Path),
        );
        check(
            "POST",
            &vs_path("/real-servers/b:2/drain"),
            Err(NoRoute::Path),
        );
        check(
            "POST",
            &vs_path("a:1/real-servers/b/c/drain"),
            Err(NoRoute::Path),
        );
    }

    #[test]
    fn usage_names_every_route() {
        let u = Usage.to_string();
        assert!(
            u.contains(STATUS)
                && u.contains(METRICS)
                && u.contains("drain|enable")
                && u.contains(GRAY)
        );
    }
}
