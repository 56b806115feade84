//! Integer formats the Kubernetes API server knows.
//!
//! schemars names Rust's integer types (`uint16`, `uint32`, ...), which the API server does
//! not know: installing the CRDs then prints `unrecognized format "uint32"` warnings. The
//! OpenAPI formats for integers are `int32` and `int64`; [`kubernetes_formats`] rewrites every
//! other integer format to the smallest of those that holds the Rust type, and keeps the
//! type's range as `minimum`/`maximum` (unless the field sets a tighter bound), so the API
//! server never stores a number the Rust types cannot read back.

use schemars::Schema;
use serde_json::Value;

/// Integer formats Kubernetes knows.
pub const KUBERNETES_INTEGER_FORMATS: &[&str] = &["int32", "int64"];

/// The Kubernetes format and the range of a schemars integer format.
fn replacement(format: &str) -> Option<(&'static str, f64, Option<f64>)> {
    Some(match format {
        "int8" => ("int32", f64::from(i8::MIN), Some(f64::from(i8::MAX))),
        "int16" => ("int32", f64::from(i16::MIN), Some(f64::from(i16::MAX))),
        "uint8" => ("int32", 0.0, Some(f64::from(u8::MAX))),
        "uint16" => ("int32", 0.0, Some(f64::from(u16::MAX))),
        "uint32" => ("int64", 0.0, Some(f64::from(u32::MAX))),
        // Values above i64::MAX cannot be represented in Kubernetes (int64) anyway.
        "uint64" | "uint" | "uint128" => ("int64", 0.0, None),
        _ => return None,
    })
}

/// Rewrites the integer formats of `schema` and of every schema inside it; use as a
/// container attribute (`#[schemars(transform = crate::formats::kubernetes_formats)]`) on
/// the types at the top of a CRD (spec and status: their fields are inlined into them).
pub fn kubernetes_formats(schema: &mut Schema) {
    if let Some(object) = schema.as_object_mut()
        && let Some((format, min, max)) = object.get("format").and_then(Value::as_str).and_then(replacement)
    {
        object.insert("format".into(), format.into());
        let lower = object.get("minimum").and_then(Value::as_f64).map_or(min, |m| m.max(min));
        object.insert("minimum".into(), number(lower));
        if let Some(max) = max {
            let upper = object.get("maximum").and_then(Value::as_f64).map_or(max, |m| m.min(max));
            object.insert("maximum".into(), number(upper));
        }
    }
    schemars::transform::transform_subschemas(&mut kubernetes_formats, schema);
}

/// A bound as JSON: an integer when it is one (as schemars writes them).
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 { Value::from(n as i64) } else { Value::from(n) }
}
