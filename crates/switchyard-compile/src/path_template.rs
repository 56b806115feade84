//! Path templates: `/users/{id}/orders/{orderId}`. Shared by compile (validation) and
//! the proxy (matching and rewriting), so both read templates the same way.

/// One `/`-separated piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Must equal the request's segment.
    Literal(String),
    /// Captures the request's (non-empty) segment under this name.
    Param(String),
}

/// A parsed match template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    pub segments: Vec<Segment>,
}

impl PathTemplate {
    /// Parses a template; parameters must fill a whole segment and be unique.
    pub fn parse(path: &str) -> Result<Self, String> {
        let rest = path.strip_prefix('/').ok_or_else(|| format!("path {path:?} must start with /"))?;
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            segments.push(parse_segment(path, raw)?);
        }
        let template = Self { segments };
        let names: Vec<&str> = template.param_names().collect();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(format!("path template {path:?} uses parameter {{{name}}} twice"));
            }
        }
        Ok(template)
    }

    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    pub fn literal_count(&self) -> usize {
        self.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count()
    }
}

fn parse_segment(path: &str, raw: &str) -> Result<Segment, String> {
    if !raw.contains(['{', '}']) {
        return Ok(Segment::Literal(raw.to_owned()));
    }
    let name = raw
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| format!("path template {path:?}: segment {raw:?} must be a whole {{name}} or contain no braces"))?;
    check_param_name(path, name)?;
    Ok(Segment::Param(name.to_owned()))
}

fn check_param_name(path: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "path template {path:?}: parameter name {name:?} must start with a letter or _ and hold only letters, digits and _"
        ));
    }
    Ok(())
}

/// A piece of a rewrite target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RewritePart {
    Literal(String),
    /// Index into the match template's parameters, in order of appearance.
    Param(usize),
}

/// Parses a rewrite path such as `/v1/orders/{id}.json` against the parameter names
/// of the match template. Parameters may appear anywhere and more than once.
pub fn parse_rewrite(rewrite: &str, params: &[&str]) -> Result<Vec<RewritePart>, String> {
    if !rewrite.starts_with('/') {
        return Err(format!("rewrite path {rewrite:?} must start with /"));
    }
    let mut parts = Vec::new();
    let mut rest = rewrite;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("rewrite path {rewrite:?} has an unmatched }}"));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("rewrite path {rewrite:?} has an unmatched {{"))? + open;
        let name = &rest[open + 1..close];
        let index = params.iter().position(|p| *p == name).ok_or_else(|| {
            format!("rewrite path {rewrite:?} uses {{{name}}}, which the match path does not define (it has: {params:?})")
        })?;
        if open > 0 {
            parts.push(RewritePart::Literal(rest[..open].to_owned()));
        }
        parts.push(RewritePart::Param(index));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(RewritePart::Literal(rest.to_owned()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_captures_named_whole_segments() {
        let t = PathTemplate::parse("/users/{id}/orders/{orderId}").unwrap();
        assert_eq!(t.param_names().collect::<Vec<_>>(), ["id", "orderId"]);
        assert_eq!(t.literal_count(), 2);
    }

    #[test]
    fn a_template_without_braces_is_all_literals() {
        let t = PathTemplate::parse("/healthz").unwrap();
        assert_eq!(t.segments, [Segment::Literal("healthz".into())]);
    }

    #[test]
    fn malformed_templates_are_rejected_with_the_reason() {
        let cases = [
            ("users/{id}", "must start with /"),
            ("/users/{id", "whole {name}"),
            ("/users/id}", "whole {name}"),
            ("/users/a{id}", "whole {name}"),
            ("/users/{}", "parameter name"),
            ("/users/{1d}", "parameter name"),
            ("/users/{i-d}", "parameter name"),
            ("/a/{id}/b/{id}", "twice"),
        ];
        for (path, want) in cases {
            let err = PathTemplate::parse(path).unwrap_err();
            assert!(err.contains(want), "{path}: {err}");
        }
    }

    #[test]
    fn a_rewrite_refers_to_match_parameters_by_index() {
        let parts = parse_rewrite("/v1/{b}/x/{a}.json", &["a", "b"]).unwrap();
        assert_eq!(
            parts,
            [
                RewritePart::Literal("/v1/".into()),
                RewritePart::Param(1),
                RewritePart::Literal("/x/".into()),
                RewritePart::Param(0),
                RewritePart::Literal(".json".into()),
            ]
        );
    }

    #[test]
    fn a_rewrite_naming_an_unknown_parameter_is_rejected() {
        let err = parse_rewrite("/v1/{nope}", &["id"]).unwrap_err();
        assert!(err.contains("{nope}"), "{err}");
        assert!(parse_rewrite("/v1/{id", &["id"]).is_err());
        assert!(parse_rewrite("/v1/id}", &["id"]).is_err());
        assert!(parse_rewrite("v1", &[]).is_err());
    }
}
