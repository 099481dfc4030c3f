//! The live map page served at `/` on `LIVE_WS_ADDR`, compiled into the binary so that the
//! processor needs no file system layout and no network access to show it.
//!
//! The one thing decided at start-up is the optional tile layer (`LIVE_MAP_TILE_URL`): it is
//! written into `index.html` as data attributes once, and its origin, only then, into the
//! page's Content-Security-Policy. Without it the page loads nothing from anywhere else.

use bytes::Bytes;
use hyper::header::HeaderValue;

const INDEX_HTML: &str = include_str!("index.html");
const MAP_JS: &str = include_str!("map.js");
const MAP_CSS: &str = include_str!("map.css");

/// The attribution OpenStreetMap's tile usage policy asks for, shown when the tiles are
/// OSM's and no `LIVE_MAP_TILE_ATTRIBUTION` is given.
pub const OSM_ATTRIBUTION: &str = "© OpenStreetMap contributors";

/// Longest accepted tile URL template and attribution: both end up in every page and in a
/// header, and nothing legitimate comes near these.
const MAX_TEMPLATE_LEN: usize = 1_024;
const MAX_ATTRIBUTION_LEN: usize = 300;

/// The page's policy without tiles: its own assets, its own WebSocket, nothing else.
const CSP_OFFLINE: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'";

/// One static file of the page.
pub struct Asset {
    pub content_type: &'static str,
    pub body: Bytes,
}

/// A validated XYZ tile URL template (`LIVE_MAP_TILE_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileTemplate {
    /// As given, `{z}`, `{x}` and `{y}` included.
    template: String,
    /// `scheme://host[:port]`, lower case: what the page's `img-src` allows.
    origin: String,
    /// Whether the tiles are OpenStreetMap's (their attribution is then the default).
    is_osm: bool,
}

impl TileTemplate {
    /// Checks `s`: an http(s) URL with a plain host (no user info), `{z}`, `{x}` and `{y}`
    /// in its path or query and no other `{...}`, of printable ASCII without quotes, spaces,
    /// `<`, `>` or `\`. Strict on purpose: the template is written into HTML and its origin
    /// into a header, and a typo should stop start-up rather than show a blank map.
    pub fn parse(s: &str) -> Result<TileTemplate, String> {
        if s.len() > MAX_TEMPLATE_LEN {
            return Err(format!("longer than {MAX_TEMPLATE_LEN} bytes"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\'' | '<' | '>' | '\\' | '`'))
        {
            return Err(format!(
                "contains {c:?}; expected a URL template such as \
                 https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png"
            ));
        }
        let lower = s.to_ascii_lowercase();
        let scheme = if lower.starts_with("https://") {
            "https"
        } else if lower.starts_with("http://") {
            "http"
        } else {
            return Err("must start with http:// or https://".into());
        };
        let rest = &s[scheme.len() + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        check_authority(authority)?;
        if path.contains('#') {
            return Err("must not contain a fragment (#)".into());
        }
        for placeholder in ["{z}", "{x}", "{y}"] {
            if !path.contains(placeholder) {
                return Err(format!(
                    "must contain {placeholder} (and {{z}}, {{x}}, {{y}} all)"
                ));
            }
        }
        let rest = path
            .replace("{z}", "")
            .replace("{x}", "")
            .replace("{y}", "");
        if rest.contains(['{', '}']) {
            return Err("only {z}, {x} and {y} are replaced; remove any other {...}".into());
        }
        let host = authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(host, _)| host)
            .to_ascii_lowercase();
        Ok(TileTemplate {
            template: s.to_owned(),
            origin: format!("{scheme}://{}", authority.to_ascii_lowercase()),
            is_osm: host == "tile.openstreetmap.org" || host.ends_with(".tile.openstreetmap.org"),
        })
    }

    pub fn template(&self) -> &str {
        &self.template
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// `host[:port]`: a DNS name or IPv4 address, or an IPv6 address in brackets.
fn check_authority(authority: &str) -> Result<(), String> {
    if authority.contains('@') {
        return Err("must not carry user info (user:password@)".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inner, after) = v6
            .split_once(']')
            .ok_or_else(|| "has an IPv6 address without its closing ]".to_owned())?;
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("has a malformed IPv6 address".into());
        }
        (authority, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err("has a host with characters other than letters, digits, '.' and '-'".into());
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("has a bad port {port:?}")),
        }
    }
    Ok(())
}

/// Checks `LIVE_MAP_TILE_ATTRIBUTION`: one line of text.
pub fn check_attribution(s: &str) -> Result<(), String> {
    if s.chars().count() > MAX_ATTRIBUTION_LEN {
        return Err(format!("longer than {MAX_ATTRIBUTION_LEN} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err("must be one line of text, without control characters".into());
    }
    Ok(())
}

/// The tile layer the page draws under the positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileLayer {
    pub template: TileTemplate,
    /// Shown in the map's corner; empty: none.
    pub attribution: String,
}

impl TileLayer {
    /// `attribution` as configured (empty: unset); unset on OSM's tiles, OSM's own.
    pub fn new(template: TileTemplate, attribution: &str) -> TileLayer {
        let attribution = if attribution.is_empty() && template.is_osm {
            OSM_ATTRIBUTION.to_owned()
        } else {
            attribution.to_owned()
        };
        TileLayer {
            template,
            attribution,
        }
    }
}

/// The page as this instance serves it.
#[derive(Debug, Clone)]
pub struct MapPage {
    index: Bytes,
    csp: HeaderValue,
}

impl Default for MapPage {
    /// Without a tile layer.
    fn default() -> MapPage {
        MapPage::new(None)
    }
}

impl MapPage {
    pub fn new(tiles: Option<&TileLayer>) -> MapPage {
        let Some(tiles) = tiles else {
            return MapPage {
                index: Bytes::from_static(INDEX_HTML.as_bytes()),
                csp: HeaderValue::from_static(CSP_OFFLINE),
            };
        };
        // Data attributes on <body>, read by map.js: no extra request, no inline script
        // (which the policy would have to allow), and HTML escaping is all it takes.
        let attributes = format!(
            "<body data-tile-url=\"{}\" data-tile-attribution=\"{}\">",
            escape_attribute(tiles.template.template()),
            escape_attribute(&tiles.attribution)
        );
        let index = INDEX_HTML.replacen("<body>", &attributes, 1);
        let csp = format!(
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: {}; \
             frame-ancestors 'none'",
            tiles.template.origin()
        );
        MapPage {
            index: Bytes::from(index),
            // The origin is checked to be plain ASCII without spaces or separators, so the
            // header is always valid; should it ever not be, no tiles rather than no page.
            csp: HeaderValue::from_str(&csp)
                .unwrap_or_else(|_| HeaderValue::from_static(CSP_OFFLINE)),
        }
    }

    /// The asset served at `path`, if any.
    pub fn asset(&self, path: &str) -> Option<Asset> {
        let (content_type, body) = match path {
            "/" | "/index.html" => ("text/html; charset=utf-8", self.index.clone()),
            "/map.js" => (
                "text/javascript; charset=utf-8",
                Bytes::from_static(MAP_JS.as_bytes()),
            ),
            "/map.css" => (
                "text/css; charset=utf-8",
                Bytes::from_static(MAP_CSS.as_bytes()),
            ),
            _ => return None,
        };
        Some(Asset { content_type, body })
    }

    /// The page's Content-Security-Policy.
    pub fn csp(&self) -> HeaderValue {
        self.csp.clone()
    }
}

fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OSM: &str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";

    #[test]
    fn the_template_has_exactly_one_body_tag_to_carry_the_tile_layer() {
        assert_eq!(INDEX_HTML.matches("<body>").count(), 1);
    }

    #[test]
    fn good_templates_are_accepted_with_their_origin() {
        let t = TileTemplate::parse(OSM).unwrap();
        assert_eq!(t.origin(), "https://tile.openstreetmap.org");
        assert!(t.is_osm);
        let t = TileTemplate::parse("http://127.0.0.1:8081/tiles/{z}/{x}/{y}.png?key=abc").unwrap();
        assert_eq!(t.origin(), "http://127.0.0.1:8081");
        assert!(!t.is_osm);
        let t = TileTemplate::parse("https://[::1]:9/{z}/{y}/{x}").unwrap();
        assert_eq!(t.origin(), "https://[::1]:9");
        let t = TileTemplate::parse("HTTPS://A.Tile.OpenStreetMap.org/{z}/{x}/{y}.png").unwrap();
        assert_eq!(t.origin(), "https://a.tile.openstreetmap.org");
        assert!(t.is_osm);
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "tile.openstreetmap.org/{z}/{x}/{y}.png",
            "ftp://tiles.example/{z}/{x}/{y}.png",
            "javascript:alert(1)//{z}{x}{y}",
            "https://tiles.example/{z}/{x}.png",
            "https://tiles.example/tiles.png",
            "https:///{z}/{x}/{y}.png",
            "https://user:pw@tiles.example/{z}/{x}/{y}.png",
            "https://{s}.tiles.example/{z}/{x}/{y}.png",
            "https://tiles.example/{z}/{x}/{y}.png?s={s}",
            "https://tiles.example:0/{z}/{x}/{y}.png",
            "https://tiles.example:99999/{z}/{x}/{y}.png",
            "https://tiles.example:/{z}/{x}/{y}.png",
            "https://tiles.example/{z}/{x}/{y}.png#frag",
            "https://tiles.example/{z}/{x}/{y} .png",
            "https://tiles.example/{z}/{x}/{y}.png\"><script>",
            "https://tiles.example;script-src */{z}/{x}/{y}.png",
            "https://tiles.example,x/{z}/{x}/{y}.png",
            "https://tiles.ex\u{e4}mple/{z}/{x}/{y}.png",
            "https://[zz]/{z}/{x}/{y}.png",
        ] {
            assert!(TileTemplate::parse(bad).is_err(), "{bad} must be refused");
        }
        let long = format!(
            "https://tiles.example/{}/{{z}}/{{x}}/{{y}}",
            "a".repeat(2000)
        );
        assert!(TileTemplate::parse(&long).is_err());
    }

    #[test]
    fn the_attribution_defaults_to_osms_on_osm_tiles_only() {
        let osm = TileLayer::new(TileTemplate::parse(OSM).unwrap(), "");
        assert_eq!(osm.attribution, OSM_ATTRIBUTION);
        let own = TileLayer::new(TileTemplate::parse(OSM).unwrap(), "my own");
        assert_eq!(own.attribution, "my own");
        let other = TileTemplate::parse("https://tiles.example/{z}/{x}/{y}.png").unwrap();
        assert_eq!(TileLayer::new(other, "").attribution, "");
        assert!(check_attribution("© Someone & Co <tiles>").is_ok());
        assert!(check_attribution("two\nlines").is_err());
        assert!(check_attribution(&"x".repeat(301)).is_err());
    }

    #[test]
    fn without_tiles_the_page_is_the_file_and_the_policy_allows_nothing_else() {
        let page = MapPage::default();
        let index = page.asset("/").unwrap().body;
        assert_eq!(index, INDEX_HTML.as_bytes());
        assert!(!INDEX_HTML.contains("data-tile-url"));
        assert_eq!(page.csp(), CSP_OFFLINE);
    }

    #[test]
    fn with_tiles_the_page_carries_them_escaped_and_the_policy_allows_their_origin() {
        let layer = TileLayer::new(
            TileTemplate::parse("https://tiles.example:8443/a/{z}/{x}/{y}.png?k=1&v=2").unwrap(),
            "\"Tiles\" <b>& co</b>",
        );
        let page = MapPage::new(Some(&layer));
        let index = String::from_utf8(page.asset("/index.html").unwrap().body.to_vec()).unwrap();
        assert!(index.contains(
            "<body data-tile-url=\"https://tiles.example:8443/a/{z}/{x}/{y}.png?k=1&amp;v=2\" \
             data-tile-attribution=\"&quot;Tiles&quot; &lt;b&gt;&amp; co&lt;/b&gt;\">"
        ));
        assert!(!index.contains("<b>"));
        assert_eq!(
            page.csp(),
            "default-src 'self'; connect-src 'self' ws: wss:; \
             img-src 'self' data: https://tiles.example:8443; frame-ancestors 'none'"
        );
    }
}
