//! Route patterns (`/posts/[id]`) and matching of concrete locations against them.

use std::fmt::Display;
use std::sync::Arc;

/// The longest location a client may report.
pub(crate) const MAX_PATH_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Static(String),
    Param(String),
}

/// A parsed route pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub raw: &'static str,
    segments: Vec<Segment>,
}

impl Pattern {
    pub fn parse(raw: &'static str) -> Self {
        let segments = split(raw)
            .map(
                |s| match s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                    Some(name) => Segment::Param(name.to_owned()),
                    None => Segment::Static(s.to_owned()),
                },
            )
            .collect();
        Pattern { raw, segments }
    }

    /// The params of `path` if it matches, and how many static segments matched (more is more specific).
    pub fn matches(&self, path: &str) -> Option<(usize, Vec<(String, String)>)> {
        let mut params = Vec::new();
        let mut statics = 0;
        let mut parts = split(path);
        for seg in &self.segments {
            let part = parts.next()?;
            match seg {
                Segment::Static(s) if s == part => statics += 1,
                Segment::Static(_) => return None,
                Segment::Param(name) => params.push((name.clone(), part.to_owned())),
            }
        }
        parts.next().is_none().then_some((statics, params))
    }

    /// The concrete path for `params`, or which param is missing or unusable.
    pub fn fill(&self, params: &[(&str, &dyn Display)]) -> Result<String, String> {
        if self.segments.is_empty() {
            return Ok("/".to_owned());
        }
        let mut out = String::new();
        for seg in &self.segments {
            out.push('/');
            match seg {
                Segment::Static(s) => out.push_str(s),
                Segment::Param(name) => {
                    let value = params
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.to_string())
                        .ok_or_else(|| format!("missing value for `[{name}]`"))?;
                    if value.is_empty()
                        || value.contains('/')
                        || value.chars().any(char::is_control)
                    {
                        return Err(format!("`[{name}]` = {value:?} is not one path segment"));
                    }
                    out.push_str(&value);
                }
            }
        }
        Ok(out)
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Normalize a reported location exactly as the page router sees it: strip query and fragment, collapse
/// empty segments and a trailing slash, and percent-decode each segment (`/boards/%31` is `/boards/1`, as
/// axum's `Path` extractor gives `1`). An encoded `/` stays `%2F`, so a segment never splits in two.
/// `None` when it is not an absolute path, is too long, or decodes to something that is not UTF-8 or
/// holds a control character.
pub(crate) fn normalize(path: &str) -> Option<Arc<str>> {
    if path.len() > MAX_PATH_LEN || !path.starts_with('/') {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let mut out = String::with_capacity(path.len());
    for segment in split(path) {
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .ok()?;
        if decoded.chars().any(char::is_control) {
            return None;
        }
        out.push('/');
        if decoded.contains('/') {
            out.push_str(&decoded.replace('/', "%2F"));
        } else {
            out.push_str(&decoded);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(Arc::from(out))
}

/// All patterns of a hub, matched most-specific first.
#[derive(Debug, Default)]
pub(crate) struct PatternSet {
    patterns: Vec<Pattern>,
}

impl PatternSet {
    pub fn insert(&mut self, raw: &'static str) {
        if !self.patterns.iter().any(|p| p.raw == raw) {
            self.patterns.push(Pattern::parse(raw));
        }
    }

    pub fn get(&self, raw: &str) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.raw == raw)
    }

    /// The best match for a normalized path: static segments win over params.
    pub fn lookup(&self, path: &str) -> Option<(&'static str, Vec<(String, String)>)> {
        self.patterns
            .iter()
            .filter_map(|p| {
                p.matches(path)
                    .map(|(score, params)| (score, p.raw, params))
            })
            .max_by_key(|(score, raw, _)| (*score, std::cmp::Reverse(*raw)))
            .map(|(_, raw, params)| (raw, params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_segment_wins_over_param() {
        let mut set = PatternSet::default();
        set.insert("/posts/[id]");
        set.insert("/posts/new");
        set.insert("/");
        assert_eq!(set.lookup("/posts/new").unwrap().0, "/posts/new");
        let (raw, params) = set.lookup("/posts/7").unwrap();
        assert_eq!(raw, "/posts/[id]");
        assert_eq!(params, vec![("id".to_owned(), "7".to_owned())]);
        assert_eq!(set.lookup("/").unwrap().0, "/");
        assert!(set.lookup("/posts/7/comments").is_none());
    }

    #[test]
    fn normalize_strips_query_fragment_and_trailing_slash() {
        assert_eq!(&*normalize("/dashboard/?x=1#top").unwrap(), "/dashboard");
        assert_eq!(&*normalize("/").unwrap(), "/");
        assert_eq!(&*normalize("//a//b/").unwrap(), "/a/b");
        assert!(normalize("dashboard").is_none());
        assert!(normalize(&"/a".repeat(2000)).is_none());
    }

    #[test]
    fn a_percent_encoded_path_is_the_page_it_shows() {
        assert_eq!(&*normalize("/boards/%31").unwrap(), "/boards/1");
        assert_eq!(&*normalize("/caf%C3%A9/%7Eme").unwrap(), "/café/~me");
        assert_eq!(
            &*normalize("/a%2Fb/c").unwrap(),
            "/a%2Fb/c",
            "an encoded slash stays in its segment"
        );
        assert_eq!(&*normalize("/a%2fb").unwrap(), "/a%2Fb");
        assert!(normalize("/%FF").is_none(), "not UTF-8");
        assert!(normalize("/a%00b").is_none(), "a control character");
        assert!(normalize("/a\nb").is_none());
    }

    #[test]
    fn fill_rejects_missing_and_multi_segment_values() {
        let p = Pattern::parse("/posts/[id]");
        assert_eq!(p.fill(&[("id", &7)]).unwrap(), "/posts/7");
        assert!(p.fill(&[]).is_err());
        assert!(p.fill(&[("id", &"a/b")]).is_err());
        assert!(
            p.fill(&[("id", &"a\nb")]).is_err(),
            "no normalized path holds a control character"
        );
        assert_eq!(
            p.fill(&[("id", &"50%31")]).unwrap(),
            "/posts/50%31",
            "a value is a decoded segment: a literal `%` stays"
        );
        assert_eq!(Pattern::parse("/").fill(&[]).unwrap(), "/");
    }
}
