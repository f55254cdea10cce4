//! Where to go after signing in: only local paths (Vibetuner shipped an open redirect, #2010).

/// `next` when it is a path on this site, else `/`.
///
/// Refused: anything not starting with a single `/`, protocol-relative `//host`, `/\host`
/// (browsers read `\` as `/`), any backslash, control characters (browsers drop tabs
/// and newlines, turning `/\t/host` into `//host`), and the same tricks hidden behind one or more
/// layers of percent-encoding.
pub fn safe_next(next: Option<&str>) -> String {
    let Some(next) = next.map(str::trim).filter(|n| !n.is_empty()) else {
        return "/".into();
    };
    let mut layer = next.to_owned();
    for _ in 0..4 {
        if !is_local_path(&layer) {
            return "/".into();
        }
        let decoded = percent_decode(&layer);
        if decoded == layer {
            return next.to_owned();
        }
        layer = decoded;
    }
    "/".into()
}

fn is_local_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && !bytes.iter().any(|&b| b == b'\\' || b < b' ' || b == 0x7f)
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn local_paths_are_kept() {
        for ok in [
            "/",
            "/notes",
            "/user/edit?tab=1&x=2",
            "/a%20b",
            "/search?q=a+b",
        ] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some("")), "/");
    }

    #[test]
    fn open_redirect_variants_are_refused() {
        for bad in [
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com",
            "http:evil.com",
            "javascript:alert(1)",
            "evil.com",
            "/%2F/evil.com",
            "%2F%2Fevil.com",
            "/%5Cevil.com",
            "/%252F%252Fevil.com",
            "/%09/evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/x\\y",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?} must be refused");
        }
    }
}
