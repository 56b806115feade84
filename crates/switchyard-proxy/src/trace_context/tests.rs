use http::{HeaderMap, HeaderValue};

use super::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn headers(lines: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    map
}

fn never(_: &[u8; 16]) -> bool {
    false
}

#[test]
fn a_valid_traceparent_is_the_parent_and_keeps_its_trace_id_and_sampled_flag() {
    let parent = parse_traceparent(VALID.as_bytes()).unwrap();
    assert_eq!(to_hex(&parent.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(to_hex(&parent.span_id), "00f067aa0ba902b7");
    assert!(parent.sampled);
    let unsampled = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
    assert!(!unsampled.sampled);
}

#[test]
fn malformed_traceparents_are_refused() {
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
    ] {
        assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad:?}");
    }
}

#[test]
fn a_later_version_is_read_for_its_first_four_fields() {
    let parent = parse_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next").unwrap();
    assert_eq!(to_hex(&parent.span_id), "00f067aa0ba902b7");
}

#[test]
fn an_incoming_trace_is_continued_with_a_new_span_of_the_gateways_own() {
    let ctx = TraceContext::of(&headers(&[("traceparent", VALID), ("tracestate", "congo=t61rcWkgMzE")]), never);
    assert_eq!(to_hex(&ctx.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(ctx.parent.map(|p| to_hex(&p)).as_deref(), Some("00f067aa0ba902b7"));
    assert_ne!(ctx.span_id, [0; 8]);
    assert_ne!(Some(ctx.span_id), ctx.parent);
    assert!(ctx.sampled, "the caller's flag, whatever the ratio says");
    let sent = ctx.traceparent();
    assert_eq!(sent.to_str().unwrap(), format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", to_hex(&ctx.span_id)));
    assert_ne!(sent, VALID, "never the client's value as it came");
    assert_eq!(ctx.tracestate.as_ref().unwrap(), "congo=t61rcWkgMzE");
}

#[test]
fn without_a_valid_traceparent_a_new_trace_starts_and_tracestate_is_dropped() {
    for lines in [
        vec![],
        vec![("traceparent", "garbage"), ("tracestate", "congo=t61rcWkgMzE")],
        vec![("traceparent", VALID), ("traceparent", VALID)],
    ] {
        let ctx = TraceContext::of(&headers(&lines), |_| true);
        assert_ne!(to_hex(&ctx.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736", "{lines:?}");
        assert_ne!(ctx.trace_id, [0; 16]);
        assert_eq!((ctx.parent, ctx.tracestate.is_some(), ctx.sampled), (None, false, true), "{lines:?}");
        let parsed = parse_traceparent(ctx.traceparent().as_bytes()).expect("what we send is valid");
        assert_eq!((parsed.trace_id, parsed.span_id), (ctx.trace_id, ctx.span_id));
    }
    let unsampled = TraceContext::of(&HeaderMap::new(), never);
    assert!(unsampled.traceparent().to_str().unwrap().ends_with("-00"));
}

#[test]
fn tracestate_lines_are_joined_unchanged_and_an_oversized_one_is_dropped() {
    let ctx = TraceContext::of(&headers(&[("traceparent", VALID), ("tracestate", "a=1, b=2"), ("tracestate", "c=3")]), never);
    assert_eq!(ctx.tracestate.unwrap(), "a=1, b=2,c=3");
    let long = format!("k={}", "v".repeat(MAX_TRACESTATE));
    let ctx = TraceContext::of(&headers(&[("traceparent", VALID), ("tracestate", &long)]), never);
    assert_eq!(ctx.tracestate, None);
    let half = format!("k={}", "v".repeat(MAX_TRACESTATE / 2));
    let ctx = TraceContext::of(&headers(&[("traceparent", VALID), ("tracestate", &half), ("tracestate", &half)]), never);
    assert_eq!(ctx.tracestate, None);
}

#[test]
fn propagate_replaces_the_clients_headers() {
    let mut upstream = headers(&[("traceparent", VALID), ("tracestate", "evil=1")]);
    let ctx = TraceContext::of(&HeaderMap::new(), never);
    ctx.propagate(&mut upstream);
    assert_eq!(upstream.get_all(TRACEPARENT).iter().count(), 1);
    assert_eq!(upstream.get(TRACEPARENT).unwrap(), &ctx.traceparent());
    assert_eq!(upstream.get(TRACESTATE), None);
}

#[test]
fn ids_are_unique() {
    let ids: std::collections::HashSet<[u8; 16]> = (0..10_000).map(|_| new_trace_id()).collect();
    assert_eq!(ids.len(), 10_000);
    let spans: std::collections::HashSet<[u8; 8]> = (0..10_000).map(|_| new_span_id()).collect();
    assert_eq!(spans.len(), 10_000);
}

#[test]
fn the_ratio_samples_all_none_or_about_its_share() {
    let ids: Vec<[u8; 16]> = (0..20_000).map(|_| new_trace_id()).collect();
    let share = |r: f64| ids.iter().filter(|id| Ratio::new(r).samples(id)).count();
    assert_eq!(share(1.0), ids.len());
    assert_eq!(share(0.0), 0);
    let tenth = share(0.1);
    assert!((1_600..2_400).contains(&tenth), "{tenth}");
    let max = [0xff; 16];
    assert!(Ratio::new(1.0).samples(&max));
    assert!(!Ratio::new(0.999).samples(&max));
}
