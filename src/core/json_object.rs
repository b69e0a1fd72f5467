//! JSON bodies must be objects. serde reads a struct from an array by
//! position, so without this `["sleep"]` would pass as `{"cmd": "sleep"}`.

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// Parses a whole JSON document that must be an object.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = object_only(&mut de)?;
    de.end()?;
    Ok(v)
}

/// A struct from a map only (a `deserialize_with` for struct fields).
pub fn object_only<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(ObjectVisitor(PhantomData))
}

/// `null` (or absent, with `#[serde(default)]`) or an object.
pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    struct OptVisitor<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for OptVisitor<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("null or an object")
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            object_only(d).map(Some)
        }
    }
    d.deserialize_option(OptVisitor(PhantomData))
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        cmd: String,
        #[serde(default)]
        n: u32,
        #[serde(default, deserialize_with = "optional_object")]
        inner: Option<Inner>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u32,
    }

    #[test]
    fn objects_pass() {
        let b: Body = from_slice(br#"{"cmd":"x","inner":{"a":1}}"#).unwrap();
        assert_eq!(b.cmd, "x");
        assert_eq!(b.inner, Some(Inner { a: 1 }));
        let b: Body = from_slice(br#" {"cmd":"x","inner":null} "#).unwrap();
        assert_eq!(b.inner, None);
    }

    #[test]
    fn arrays_and_scalars_do_not() {
        // serde_json alone takes this array for {"cmd": "sleep", "n": 3}.
        assert!(serde_json::from_slice::<Body>(br#"["sleep", 3]"#).is_ok());
        for bad in [
            &br#"["sleep", 3]"#[..],
            br#""sleep""#,
            b"3",
            b"null",
            b"true",
            br#"{"cmd":"x","inner":[1]}"#,
            br#"{"cmd":"x","unknown":1}"#,
            br#"{"cmd":"x"} trailing"#,
        ] {
            let e = from_slice::<Body>(bad).unwrap_err();
            assert!(!e.to_string().is_empty());
        }
        let e = from_slice::<Body>(br#"["sleep"]"#).unwrap_err().to_string();
        assert!(e.contains("expected an object"), "{e}");
        let e = from_slice::<Body>(br#"{"cmd":"x","unknown":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown"), "{e}");
    }
}
