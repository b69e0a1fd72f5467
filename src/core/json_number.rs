//! JSON integers as JSON Schema (and so the API document) reads them: a
//! number without a fraction is an integer, written `8080` or `8080.0`.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// 2^63 and 2^64 as floats: the first integral floats out of range.
const I64_END: f64 = 9_223_372_036_854_775_808.0;
const U64_END: f64 = 18_446_744_073_709_551_616.0;

fn integral(f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0
}

/// The unsigned integer an integral float in range is.
pub fn integral_u64(f: f64) -> Option<u64> {
    (integral(f) && (0.0..U64_END).contains(&f)).then_some(f as u64)
}

/// A signed integer, from an integer or an integral float in range.
pub fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        let f = v.as_f64()?;
        (integral(f) && (-I64_END..I64_END).contains(&f)).then_some(f as i64)
    })
}

/// An unsigned integer, from an integer or an integral float in range.
pub fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| integral_u64(v.as_f64()?))
}

/// serde: an optional integer field (null is none), `8080.0` read as
/// `8080`; the error names `field`. JSON and TOML alike.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_i64(&v).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("`{field}` must be an integer, got {v}"))
        }),
    }
}

/// serde: an optional unsigned integer field, as `opt_i64`.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_u64(&v).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("`{field}` must be an integer >= 0, got {v}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "i")]
        i: Option<i64>,
        #[serde(default, deserialize_with = "u")]
        u: Option<u64>,
    }

    fn i<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        opt_i64(d, "i")
    }

    fn u<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        opt_u64(d, "u")
    }

    fn t(s: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn integral_floats_are_integers() {
        assert_eq!(as_i64(&json!(8080.0)), Some(8080));
        assert_eq!(as_i64(&json!(-3)), Some(-3));
        assert_eq!(as_u64(&json!(7.0)), Some(7));
        for v in [
            json!(1.5),
            json!(-1.0),
            json!(1e20),
            json!("7"),
            json!(null),
        ] {
            assert_eq!(as_u64(&v), None, "{v}");
        }
        assert_eq!(as_i64(&json!(1e19)), None);
        assert_eq!(as_i64(&json!(0.5)), None);
    }

    #[test]
    fn serde_fields() {
        let v = t(r#"{"i": 8080.0, "u": 18446744073709551615}"#).unwrap();
        assert_eq!((v.i, v.u), (Some(8080), Some(u64::MAX)));
        let v = t(r#"{"i": null}"#).unwrap();
        assert_eq!((v.i, v.u), (None, None));
        for bad in [
            r#"{"i": 1.5}"#,
            r#"{"u": -1}"#,
            r#"{"i": "1"}"#,
            r#"{"u": 1e30}"#,
        ] {
            let e = t(bad).err().unwrap().to_string();
            assert!(
                e.contains("`i` must be") || e.contains("`u` must be"),
                "{bad}: {e}"
            );
        }
        let toml: T = toml::from_str("i = 80.0\nu = 3\n").unwrap();
        assert_eq!((toml.i, toml.u), (Some(80), Some(3)));
    }
}
