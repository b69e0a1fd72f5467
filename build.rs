//! Embeds the OpenAPI document (src/api/openapi.json, kept indented for
//! people) without its insignificant whitespace: a third smaller in the
//! binary, the same JSON to any client.

use std::path::Path;

fn main() {
    let source = "src/api/openapi.json";
    println!("cargo:rerun-if-changed={source}");
    let text = std::fs::read_to_string(source).expect("src/api/openapi.json is readable");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out).join("openapi.min.json"), minify(&text))
        .expect("OUT_DIR is writable");
}

/// Drops whitespace outside strings (JSON allows it only between tokens).
fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}
