//! The console: the admin listener's web page, static files compiled into the binary that
//! talk to the admin API (no build step, no CDN, no request leaves the machine).

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::http::{Body, text};

/// What the page may load and run: its own script and style only, requests to its own
/// listener only, no frames, no inline script (a response body shown on the page cannot run).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The files of the console by their path under `/`, with their content type.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "",
        include_str!("console/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "console.js",
        include_str!("console/console.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "console.css",
        include_str!("console/console.css"),
        "text/css; charset=utf-8",
    ),
];

/// The example events shipped with whc, for the console's "Try an event" page.
const EXAMPLES: [(&str, &str); 4] = [
    (
        "conversion-facebook-us",
        include_str!("../../examples/events/conversion-facebook-us.json"),
    ),
    (
        "event1-dach-lead",
        include_str!("../../examples/events/event1-dach-lead.json"),
    ),
    (
        "event3-tiktok-signup",
        include_str!("../../examples/events/event3-tiktok-signup.json"),
    ),
    (
        "refund-tiktok",
        include_str!("../../examples/events/refund-tiktok.json"),
    ),
];

/// The console's file at `path` (without the leading `/`; `""` is the page), if there is one.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, body, kind)| (*body, *kind))
}

/// Whether a request path is one of the console's files: they hold no data, so they are
/// served without the admin token (the page asks for it).
pub fn is_asset(path: &str) -> bool {
    path.strip_prefix('/').and_then(asset).is_some()
}

/// Answers with a console file and the headers that lock the page down.
pub fn serve(path: &str) -> Response<Body> {
    let Some((body, kind)) = asset(path) else {
        return super::http::error(StatusCode::NOT_FOUND, "not found");
    };
    let mut res = text(StatusCode::OK, body, kind);
    let headers = res.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // A new binary may ship new files: ask every time (they are small).
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    res
}

/// The example events as `{"name": event}`, each as it is in `examples/events/`.
pub fn examples() -> serde_json::Value {
    let map = EXAMPLES
        .iter()
        .filter_map(|(name, text)| Some((name.to_string(), serde_json::from_str(text).ok()?)))
        .collect::<serde_json::Map<_, _>>();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_an_event() {
        for (name, text) in EXAMPLES {
            crate::event::Event::from_json_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(examples().as_object().unwrap().len(), EXAMPLES.len());
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (path, body, _) in ASSETS {
            for outside in ["http://", "https://", "//cdn", "innerHTML", "eval("] {
                assert!(!body.contains(outside), "{path} holds {outside}");
            }
        }
        assert!(is_asset("/") && is_asset("/console.js") && !is_asset("/v1/rules"));
    }
}
