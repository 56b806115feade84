//! Path templates (`/users/{id}`) and rewrite targets: whatever parses prints back to the
//! exact text it came from, and a rewrite only names the match template's parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_compile::path_template::{PathTemplate, RewritePart, Segment, parse_rewrite};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (template, rewrite) = text.split_once('\n').unwrap_or((text, "/"));
    let Ok(parsed) = PathTemplate::parse(template) else { return };
    let printed = print(&parsed);
    assert_eq!(printed, template, "a parsed template prints back as written");
    assert_eq!(PathTemplate::parse(&printed).as_ref(), Ok(&parsed), "and parses to the same template");
    let names: Vec<&str> = parsed.param_names().collect();
    for (i, name) in names.iter().enumerate() {
        assert!(!names[..i].contains(name), "parameter {name} is unique");
    }
    let Ok(parts) = parse_rewrite(rewrite, &names) else { return };
    let mut out = String::new();
    for part in &parts {
        match part {
            RewritePart::Literal(literal) => {
                assert!(!literal.contains(['{', '}']), "a literal holds no brace: {literal:?}");
                out.push_str(literal);
            }
            RewritePart::Param(index) => {
                assert!(*index < names.len(), "a rewrite names a parameter of the template");
                out.push('{');
                out.push_str(names[*index]);
                out.push('}');
            }
        }
    }
    assert_eq!(out, rewrite, "a parsed rewrite prints back as written");
});

fn print(template: &PathTemplate) -> String {
    let mut out = String::new();
    for segment in &template.segments {
        out.push('/');
        match segment {
            Segment::Literal(literal) => out.push_str(literal),
            Segment::Param(name) => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
    }
    out
}
