//! The live map page served at `/` on `LIVE_WS_ADDR`, compiled into the binary so that the
//! processor needs no file system layout and no network access to show it.

/// One static file of the page.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The asset served at `path`, if any.
pub fn asset(path: &str) -> Option<Asset> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", include_str!("index.html")),
        "/map.js" => ("text/javascript; charset=utf-8", include_str!("map.js")),
        "/map.css" => ("text/css; charset=utf-8", include_str!("map.css")),
        _ => return None,
    };
    Some(Asset { content_type, body })
}
