//! The pages' HTML: escaping, the layout every page shares (skip link, navigation, who is signed
//! in), and the form fields and time stamps the pages repeat. No JavaScript anywhere.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::Viewer;

/// Text made safe for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page a link in the navigation leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Requests,
    Grants,
    Charts,
    Export,
}

const NAV: [(Nav, &str, &str); 4] = [
    (Nav::Requests, "/admin", "Requests"),
    (Nav::Grants, "/admin/grants", "Grants"),
    (Nav::Charts, "/admin/charts", "Charts"),
    (Nav::Export, "/admin/export", "Export"),
];

const CSS: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fff;line-height:1.45}\
.skip{position:absolute;left:-10000px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem;z-index:1}\
header{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;justify-content:space-between;padding:.6rem 1.2rem;background:#1f3a5f;color:#fff}\
header a{color:#fff}header nav ul{display:flex;gap:1.2rem;list-style:none;margin:0;padding:0}\
header a[aria-current=page]{font-weight:700;text-decoration-thickness:3px}\
header form{display:inline;margin:0}header p{margin:0}\
main{padding:1rem 1.2rem;max-width:90rem}h1{font-size:1.5rem;margin:.4rem 0 1rem}h2{font-size:1.2rem;margin-top:1.6rem}\
form.filters{display:flex;flex-wrap:wrap;gap:.8rem;align-items:flex-end;margin-bottom:1rem}\
form.filters div{display:flex;flex-direction:column}label{font-weight:600;font-size:.9rem}\
input,select,button{font:inherit;padding:.3rem .4rem}button{cursor:pointer}\
a:focus,button:focus,input:focus,select:focus{outline:3px solid #e8a33d;outline-offset:1px}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}caption{text-align:left;font-weight:600;padding:.3rem 0}\
th,td{border:1px solid #c8c8c8;padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:#eef1f5}\
td.num{text-align:right;font-variant-numeric:tabular-nums}th[scope=row]{white-space:nowrap}pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:.85rem}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}\
.ok{color:#14632d;font-weight:600}.bad{color:#9b1c1c;font-weight:600}\
nav.pages{display:flex;gap:1rem}svg{max-width:100%;height:auto}\
";

/// A whole page: `title` (also the `h1`), the navigation with `current` marked, who is signed in,
/// and `body` (already HTML).
pub fn page(title: &str, current: Option<Nav>, viewer: Option<&Viewer>, body: &str) -> String {
    let mut nav = String::new();
    if viewer.is_some_and(|v| v.allowed) {
        nav.push_str("<nav aria-label=\"Admin pages\"><ul>");
        for (which, href, text) in NAV {
            let cur = if Some(which) == current {
                " aria-current=\"page\""
            } else {
                ""
            };
            nav.push_str(&format!("<li><a href=\"{href}\"{cur}>{text}</a></li>"));
        }
        nav.push_str("</ul></nav>");
    }
    let who = match viewer {
        Some(v) => {
            let out = if v.can_sign_out {
                "<form method=\"post\" action=\"/admin/logout\"><button type=\"submit\">Sign out</button></form>"
            } else {
                ""
            };
            format!("<p>Signed in as {} ({}) {out}</p>", esc(&v.email), v.role)
        }
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · grantry admin</title><style>{CSS}</style></head>\
         <body><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><strong>grantry admin</strong>{nav}{who}</header>\
         <main id=\"main\" tabindex=\"-1\"><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    )
}

/// An HTML response.
pub fn respond(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// A short page that says one thing (errors, refusals).
pub fn message(status: StatusCode, title: &str, viewer: Option<&Viewer>, text: &str) -> Response {
    respond(
        status,
        page(title, None, viewer, &format!("<p>{}</p>", esc(text))),
    )
}

/// A time for people (`2026-11-24 21:13 UTC`) in a `<time>` element; `—` when absent.
pub fn time(ms: Option<i64>) -> String {
    match ms.and_then(chrono::DateTime::from_timestamp_millis) {
        Some(t) => format!(
            "<time datetime=\"{}\">{}</time>",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            t.format("%Y-%m-%d %H:%M UTC")
        ),
        None => "—".into(),
    }
}

/// A labelled text-like input (`type` = `search`, `date`, …).
pub fn input(id: &str, label: &str, kind: &str, value: &str) -> String {
    format!(
        "<div><label for=\"{id}\">{label}</label><input id=\"{id}\" name=\"{id}\" type=\"{kind}\" value=\"{}\"></div>",
        esc(value)
    )
}

/// A labelled select; `options` are (value, text), the first usually ("", "Any").
pub fn select(id: &str, label: &str, options: &[(String, String)], selected: &str) -> String {
    let mut s =
        format!("<div><label for=\"{id}\">{label}</label><select id=\"{id}\" name=\"{id}\">");
    for (value, text) in options {
        let sel = if value == selected { " selected" } else { "" };
        s.push_str(&format!(
            "<option value=\"{}\"{sel}>{}</option>",
            esc(value),
            esc(text)
        ));
    }
    s.push_str("</select></div>");
    s
}

/// "Previous" and "Next" links for page `page` (1-based) of a listing at `path` with `query`
/// (the filters, already encoded).
pub fn pager(path: &str, query: &str, page: i64, more: bool) -> String {
    let link = |p: i64, text: &str, rel: &str| {
        let sep = if query.is_empty() { "" } else { "&" };
        format!(
            "<a href=\"{path}?{}{sep}page={p}\" rel=\"{rel}\">{text}</a>",
            esc(query)
        )
    };
    let mut s = String::from("<nav class=\"pages\" aria-label=\"Pages\">");
    if page > 1 {
        s.push_str(&link(page - 1, "Previous page", "prev"));
    }
    s.push_str(&format!("<span>Page {page}</span>"));
    if more {
        s.push_str(&link(page + 1, "Next page", "next"));
    }
    s.push_str("</nav>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_html_cares_about_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn pages_say_their_language_and_offer_a_skip_link() {
        let p = page("Requests", Some(Nav::Requests), None, "<p>x</p>");
        assert!(p.contains("<html lang=\"en\">"));
        assert!(p.contains("href=\"#main\""));
        assert!(!p.contains("<script"));
    }
}
