//! Helpers shared by the control-plane services: the query protocol's form parameters (STS,
//! EC2: `Action=…&Filter.1.Name=…&Filter.1.Value.1=…`), a minimal XML writer for their
//! responses, EC2-style wildcard matching, and opaque pagination tokens. No service logic here.

use std::fmt::Write as _;

/// The decoded `application/x-www-form-urlencoded` parameters of a query-protocol request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// Decodes a request body.
    pub(crate) fn parse(body: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The members of list `prefix` (`prefix.1`, `prefix.2`, …) in index order.
    pub(crate) fn list(&self, prefix: &str) -> Vec<String> {
        let mut items: Vec<(u32, String)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let index = k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
                Some((index, v.clone()))
            })
            .collect();
        items.sort_by_key(|(index, _)| *index);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// EC2 filters: `Filter.N.Name` with `Filter.N.Value.M`, in index order.
    pub(crate) fn filters(&self) -> Vec<(String, Vec<String>)> {
        let mut indices: Vec<u32> = self
            .0
            .iter()
            .filter_map(|(k, _)| {
                k.strip_prefix("Filter.")?
                    .strip_suffix(".Name")?
                    .parse()
                    .ok()
            })
            .collect();
        indices.sort_unstable();
        indices.dedup();
        indices
            .into_iter()
            .filter_map(|n| {
                let name = self.get(&format!("Filter.{n}.Name"))?.to_owned();
                Some((name, self.list(&format!("Filter.{n}.Value"))))
            })
            .collect()
    }
}

/// Builds an XML document element by element, escaping text.
#[derive(Debug, Default)]
pub(crate) struct Xml {
    out: String,
    open: Vec<&'static str>,
}

impl Xml {
    /// A document whose root element is `root` in namespace `xmlns`.
    pub(crate) fn document(root: &'static str, xmlns: &str) -> Self {
        let mut xml = Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            open: vec![root],
        };
        let _ = write!(xml.out, "<{root} xmlns=\"{}\">", escape(xmlns));
        xml
    }

    /// A document whose root element has no namespace.
    pub(crate) fn bare(root: &'static str) -> Self {
        let mut xml = Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            open: vec![root],
        };
        let _ = write!(xml.out, "<{root}>");
        xml
    }

    /// Opens `tag`.
    pub(crate) fn start(&mut self, tag: &'static str) -> &mut Self {
        let _ = write!(self.out, "<{tag}>");
        self.open.push(tag);
        self
    }

    /// Closes the innermost open element.
    pub(crate) fn end(&mut self) -> &mut Self {
        if let Some(tag) = self.open.pop() {
            let _ = write!(self.out, "</{tag}>");
        }
        self
    }

    /// `<tag>text</tag>`, or `<tag/>` for empty text.
    pub(crate) fn leaf(&mut self, tag: &str, text: &str) -> &mut Self {
        if text.is_empty() {
            let _ = write!(self.out, "<{tag}/>");
        } else {
            let _ = write!(self.out, "<{tag}>{}</{tag}>", escape(text));
        }
        self
    }

    /// Closes every open element and returns the document.
    pub(crate) fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.end();
        }
        self.out
    }
}

/// Escapes XML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// EC2 filter matching: `*` matches any run of characters, `?` exactly one; case-sensitive.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Greedy match with backtracking to the last `*` (linear in practice).
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// One page of `items` starting at the offset `token` encodes; the token of the next page when
/// more remain. Tokens are bound to `scope` (account, region, operation) so a token from one
/// listing is refused by another. `Err(())` for a token this emulator did not issue for `scope`.
pub(crate) fn page<'a, T>(
    items: &'a [T],
    max: usize,
    token: Option<&str>,
    scope: &str,
) -> Result<(&'a [T], Option<String>), ()> {
    let start = match token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => decode_token(token, scope).ok_or(())?,
    };
    if start > items.len() {
        return Err(());
    }
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| encode_token(end, scope));
    Ok((&items[start..end], next))
}

fn encode_token(offset: usize, scope: &str) -> String {
    hex::encode(format!("{offset}:{:016x}", scope_hash(scope)))
}

fn decode_token(token: &str, scope: &str) -> Option<usize> {
    let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let (offset, hash) = text.split_once(':')?;
    (hash == format!("{:016x}", scope_hash(scope)))
        .then(|| offset.parse().ok())
        .flatten()
}

fn scope_hash(scope: &str) -> u64 {
    scope.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lists_and_filters() {
        let form = Form::parse(
            b"Action=DescribeInstances&InstanceId.2=i-b&InstanceId.1=i-a&\
              Filter.1.Name=tag%3AName&Filter.1.Value.1=web-*&Filter.1.Value.2=api&\
              Filter.2.Name=instance-state-name&Filter.2.Value.1=running",
        );
        assert_eq!(form.get("Action"), Some("DescribeInstances"));
        assert_eq!(form.list("InstanceId"), ["i-a", "i-b"]);
        assert_eq!(
            form.filters(),
            [
                (
                    "tag:Name".to_owned(),
                    vec!["web-*".to_owned(), "api".to_owned()]
                ),
                ("instance-state-name".to_owned(), vec!["running".to_owned()]),
            ]
        );
    }

    #[test]
    fn wildcards_match_like_ec2() {
        assert!(wildcard_match("web-*", "web-frontend-1"));
        assert!(wildcard_match("*prod*", "kafka-prod-1"));
        assert!(wildcard_match("kafka-?", "kafka-1"));
        assert!(!wildcard_match("kafka-?", "kafka-10"));
        assert!(!wildcard_match("Web-*", "web-1"));
        assert!(wildcard_match("exact", "exact"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn xml_is_escaped_and_closed() {
        let mut xml = Xml::document("R", "urn:x");
        xml.start("a").leaf("b", "x<y&z").leaf("c", "");
        assert_eq!(
            xml.finish(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R xmlns=\"urn:x\"><a><b>x&lt;y&amp;z</b><c/></a></R>"
        );
    }

    #[test]
    fn pages_cover_everything_once_and_tokens_are_scoped() {
        let items: Vec<u32> = (0..12).collect();
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = page(&items, 5, token.as_deref(), "a").unwrap();
            seen.extend_from_slice(page);
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, items);
        let (_, next) = page(&items, 5, None, "a").unwrap();
        assert!(page(&items, 5, next.as_deref(), "b").is_err());
        assert!(page(&items, 5, Some("zz"), "a").is_err());
    }
}
