//! The image store: one OCI layout per reference under `STORE/images/`,
//! pulls staged in `STORE/pulling/`, and reading a stored image's config.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::containers::error::{io_err, ContainerError};
use crate::containers::image::{valid_digest, ImageRef};
use crate::containers::settings::{is_insecure, ContainerSettings};

/// The tag every image has inside its own store layout (one layout per
/// reference, so the tag carries no information).
pub const STORE_TAG: &str = "image";
/// Largest JSON document (index, manifest, image config, config.json) or
/// passwd/group file read from an image: a hostile image cannot make the
/// init allocate without bound.
pub(crate) const MAX_DOC: u64 = 4 << 20;

/// The store directory name of a reference: the canonical reference with
/// every byte outside `[A-Za-z0-9._-]` percent-encoded (injective, and never
/// contains `:` or `/`); very long references end in a hash instead.
pub fn image_key(r: &ImageRef) -> String {
    let canon = r.to_string();
    let mut key = String::with_capacity(canon.len() + 16);
    for b in canon.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            key.push(char::from(b));
        } else {
            key.push_str(&format!("%{b:02X}"));
        }
    }
    if key.len() > 200 {
        // FNV-1a: enough to keep distinct long references apart.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in canon.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        key.truncate(180);
        while key.ends_with('%')
            || key
                .get(key.len().saturating_sub(2)..)
                .is_some_and(|t| t.starts_with('%'))
        {
            key.pop();
        }
        key.push_str(&format!("~{h:016x}"));
    }
    key
}

fn images_dir(s: &ContainerSettings) -> PathBuf {
    s.store_dir.join("images")
}

/// The OCI layout holding the pulled image and the tag inside it.
pub fn image_store_path(s: &ContainerSettings, r: &ImageRef) -> (PathBuf, String) {
    (images_dir(s).join(image_key(r)), STORE_TAG.to_string())
}

// In-progress and replaced pulls live beside `images/`, not in it, so no
// reference's key can name them.
fn partial_path(s: &ContainerSettings, r: &ImageRef) -> PathBuf {
    s.store_dir.join("pulling").join(image_key(r))
}

/// Before spawning [`pull_argv`]: clears a half-finished earlier pull and
/// makes the store directories.
pub fn prepare_pull(s: &ContainerSettings, r: &ImageRef) -> Result<(), ContainerError> {
    let store = s.store_dir.to_string_lossy();
    if store.contains(':') || !s.store_dir.is_absolute() {
        return Err(ContainerError::BadStoreDir {
            path: s.store_dir.clone(),
        });
    }
    let partial = partial_path(s, r);
    remove_tree(&partial)?;
    for dir in ["images", "pulling", "old", "tmp"] {
        let dir = s.store_dir.join(dir);
        fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, e))?;
    }
    Ok(())
}

/// `skopeo copy` from the reference into the store (`STORE/pulling/KEY`).
/// Progress lines go to stdout, the error (one `level=fatal` line) to stderr.
pub fn pull_argv(s: &ContainerSettings, r: &ImageRef) -> Vec<String> {
    // --insecure-policy: the sandbox has no signature policy to enforce
    // (Debian's default policy accepts anything too); pin a digest for
    // integrity. It also spares the VM an /etc/containers/policy.json.
    let mut argv = vec![
        "skopeo".to_string(),
        "--insecure-policy".to_string(),
        "copy".to_string(),
    ];
    let src = match r {
        ImageRef::Registry {
            host,
            name,
            tag,
            digest,
        } => {
            if is_insecure(s, host) {
                argv.push("--src-tls-verify=false".to_string());
            }
            // skopeo refuses name:tag@digest: the digest alone pins the image.
            match (digest, tag) {
                (Some(d), _) => format!("docker://{host}/{name}@{d}"),
                (None, Some(t)) => format!("docker://{host}/{name}:{t}"),
                (None, None) => format!("docker://{host}/{name}:latest"),
            }
        }
        ImageRef::OciLayout { path, tag } => match tag {
            Some(t) => format!("oci:{}:{t}", path.display()),
            None => format!("oci:{}", path.display()),
        },
    };
    argv.push(src);
    argv.push(format!("oci:{}:{STORE_TAG}", partial_path(s, r).display()));
    argv
}

/// Environment for the pull: big layers are staged in the store rather than
/// in `/var/tmp` (which may be small or read-only in the VM).
pub fn pull_env(s: &ContainerSettings) -> Vec<(String, String)> {
    vec![(
        "TMPDIR".to_string(),
        s.store_dir.join("tmp").to_string_lossy().into_owned(),
    )]
}

/// After the pull exited 0: moves the image into place (replacing an older
/// pull of the same reference) and returns its digest.
pub fn finish_pull(s: &ContainerSettings, r: &ImageRef) -> Result<String, ContainerError> {
    let partial = partial_path(s, r);
    let Some(digest) = layout_digest(&partial) else {
        return Err(ContainerError::BadImage {
            image: r.to_string(),
            reason: "the pull finished but left no image behind".to_string(),
        });
    };
    let (dest, _) = image_store_path(s, r);
    if dest.exists() {
        let old = s.store_dir.join("old").join(image_key(r));
        remove_tree(&old)?;
        fs::rename(&dest, &old).map_err(|e| io_err("moving aside", &dest, e))?;
        fs::rename(&partial, &dest).map_err(|e| io_err("renaming", &partial, e))?;
        remove_tree(&old)?;
    } else {
        fs::rename(&partial, &dest).map_err(|e| io_err("renaming", &partial, e))?;
    }
    Ok(digest)
}

/// After a failed pull: removes what it left (best effort).
pub fn abandon_pull(s: &ContainerSettings, r: &ImageRef) {
    let _ = remove_tree(&partial_path(s, r));
}

/// Forgets a pulled image, so the next start pulls again.
pub fn remove_image(s: &ContainerSettings, r: &ImageRef) -> Result<(), ContainerError> {
    remove_tree(&image_store_path(s, r).0)
}

/// What a garbage collection of the store removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Store keys of the images removed.
    pub images: Vec<String>,
    /// Entries of `pulling/`, `old/` and `tmp/` removed.
    pub leftovers: usize,
}

/// Removes from the store what nothing uses any more: images no defined
/// service refers to (`in_use`), partial pulls that are not in progress
/// (`pulling`: a pull that was killed leaves one), images set aside by an
/// interrupted replacement, and skopeo's temporary files when no pull
/// runs. Without it the store only ever grows.
pub fn collect_garbage(
    s: &ContainerSettings,
    in_use: &[ImageRef],
    pulling: &[ImageRef],
) -> Collected {
    let keep: std::collections::HashSet<String> = in_use.iter().map(image_key).collect();
    let busy: std::collections::HashSet<String> = pulling.iter().map(image_key).collect();
    let mut out = Collected::default();
    let entries = |dir: &str| -> Vec<(String, PathBuf)> {
        fs::read_dir(s.store_dir.join(dir))
            .map(|rd| {
                rd.flatten()
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (key, path) in entries("images") {
        if !keep.contains(&key) && remove_tree(&path).is_ok() {
            out.images.push(key);
        }
    }
    out.images.sort();
    let mut leftovers: Vec<PathBuf> = entries("pulling")
        .into_iter()
        .filter(|(key, _)| !busy.contains(key))
        .map(|(_, p)| p)
        .collect();
    // `old/` holds an image only during finish_pull, which never yields.
    leftovers.extend(entries("old").into_iter().map(|(_, p)| p));
    if pulling.is_empty() {
        leftovers.extend(entries("tmp").into_iter().map(|(_, p)| p));
    }
    out.leftovers = leftovers.iter().filter(|p| remove_tree(p).is_ok()).count();
    out
}

/// The digest of the pulled image's manifest, from the store's index.json.
/// For images stored in the registry in OCI format this is the registry's
/// digest; Docker-format images are converted to OCI by the pull, so theirs
/// is the converted manifest's.
pub fn image_digest(s: &ContainerSettings, r: &ImageRef) -> Option<String> {
    layout_digest(&image_store_path(s, r).0)
}

fn layout_digest(layout: &Path) -> Option<String> {
    let index = read_json(&layout.join("index.json")).ok()?;
    let desc = find_tagged(&index, STORE_TAG)?;
    let d = desc.get("digest")?.as_str()?;
    valid_digest(d).then(|| d.to_string())
}

fn find_tagged<'a>(index: &'a Value, tag: &str) -> Option<&'a Value> {
    index.get("manifests")?.as_array()?.iter().find(|m| {
        m.get("annotations")
            .and_then(|a| a.get("org.opencontainers.image.ref.name"))
            .and_then(Value::as_str)
            == Some(tag)
    })
}

pub(crate) fn read_json(path: &Path) -> Result<Value, String> {
    let f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_DOC + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_DOC {
        return Err(format!("{}: larger than {MAX_DOC} bytes", path.display()));
    }
    serde_json::from_slice(&buf).map_err(|e| format!("{}: {e}", path.display()))
}

fn blob_path(layout: &Path, digest: &str) -> Option<PathBuf> {
    // Only well-formed digests become paths: nothing like "../" gets in.
    if !valid_digest(digest) {
        return None;
    }
    let (alg, hex) = digest.split_once(':')?;
    Some(layout.join("blobs").join(alg).join(hex))
}

/// What the image says about how to run it (its config's `config` object).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// The image's preferred stop signal (`SIGQUIT` for nginx, say).
    pub stop_signal: Option<String>,
}

/// Reads the pulled image's config from the store.
pub fn read_image_config(
    s: &ContainerSettings,
    r: &ImageRef,
) -> Result<ImageConfig, ContainerError> {
    let image = r.to_string();
    let bad = |reason: String| ContainerError::BadImage {
        image: image.clone(),
        reason,
    };
    let (layout, tag) = image_store_path(s, r);
    let index = match read_json(&layout.join("index.json")) {
        Ok(v) => v,
        Err(_) if !layout.exists() => {
            return Err(ContainerError::NotPulled {
                image: image.clone(),
            })
        }
        Err(e) => return Err(bad(e)),
    };
    let desc = find_tagged(&index, &tag)
        .ok_or_else(|| bad("no tagged manifest in the store".to_string()))?;
    let media = desc.get("mediaType").and_then(Value::as_str).unwrap_or("");
    if media.contains("index") || media.contains("manifest.list") {
        return Err(bad(
            "stored image is a multi-platform index, not a manifest".to_string(),
        ));
    }
    let mdigest = desc.get("digest").and_then(Value::as_str).unwrap_or("");
    let mpath = blob_path(&layout, mdigest)
        .ok_or_else(|| bad(format!("bad manifest digest {mdigest:?}")))?;
    let manifest = read_json(&mpath).map_err(bad)?;
    let cdigest = manifest
        .get("config")
        .and_then(|c| c.get("digest"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let cpath =
        blob_path(&layout, cdigest).ok_or_else(|| bad(format!("bad config digest {cdigest:?}")))?;
    let config = read_json(&cpath).map_err(bad)?;
    Ok(image_config_from_json(&config))
}

/// The run-relevant part of an OCI image config document.
pub fn image_config_from_json(doc: &Value) -> ImageConfig {
    let c = doc.get("config");
    let strings = |key: &str| -> Vec<String> {
        c.and_then(|c| c.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let string = |key: &str| -> String {
        c.and_then(|c| c.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let stop = string("StopSignal");
    ImageConfig {
        env: strings("Env"),
        entrypoint: strings("Entrypoint"),
        cmd: strings("Cmd"),
        working_dir: string("WorkingDir"),
        user: string("User"),
        stop_signal: (!stop.is_empty()).then_some(stop),
    }
}

pub(crate) fn remove_tree(path: &Path) -> Result<(), ContainerError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("inspecting", path, e)),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(|e| io_err("removing", path, e)),
        Ok(_) => fs::remove_file(path).map_err(|e| io_err("removing", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True when the reference was pulled (completely: a pull lands in
    /// `STORE/pulling/` and is renamed into `STORE/images/` only on success).
    fn is_pulled(s: &ContainerSettings, r: &ImageRef) -> bool {
        image_digest(s, r).is_some()
    }
    use crate::containers::image::parse_image_ref;
    use crate::containers::test_support::{settings, tmpdir, D};

    #[test]
    fn pull_argv_copies_into_a_partial_layout() {
        let s = settings(Path::new("/st"));
        let r = parse_image_ref("127.0.0.1:5000/busybox:1").unwrap();
        let argv = pull_argv(&s, &r);
        assert_eq!(
            argv,
            vec![
                "skopeo",
                "--insecure-policy",
                "copy",
                "--src-tls-verify=false",
                "docker://127.0.0.1:5000/busybox:1",
                "oci:/st/store/pulling/127.0.0.1%3A5000%2Fbusybox%3A1:image",
            ]
        );
        let r = parse_image_ref("redis:7").unwrap();
        let argv = pull_argv(&s, &r);
        assert!(!argv.iter().any(|a| a.contains("tls-verify")));
        assert!(argv.contains(&"docker://docker.io/library/redis:7".to_string()));
        let r = parse_image_ref(&format!("busybox:1@{D}")).unwrap();
        assert!(pull_argv(&s, &r).contains(&format!("docker://docker.io/library/busybox@{D}")));
        let r = parse_image_ref("oci:/img/bb:1").unwrap();
        let argv = pull_argv(&s, &r);
        assert!(argv.contains(&"oci:/img/bb:1".to_string()));
        assert!(!argv.iter().any(|a| a.contains("tls-verify")));
    }

    #[test]
    fn store_keys_are_distinct_and_safe() {
        let refs = [
            "127.0.0.1:5000/busybox:1",
            "127.0.0.1:5000/busybox:2",
            "127.0.0.1:5001/busybox:1",
            "busybox:1",
            "oci:/a/b:1",
            "oci:/a/b",
        ];
        let keys: Vec<String> = refs
            .iter()
            .map(|r| image_key(&parse_image_ref(r).unwrap()))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(!k.contains('/') && !k.contains(':'), "{k}");
            assert!(keys.iter().skip(i + 1).all(|o| o != k), "duplicate {k}");
        }
        // Same image, two spellings: one store entry (pulled once).
        assert_eq!(
            image_key(&parse_image_ref("busybox:1").unwrap()),
            image_key(&parse_image_ref("docker.io/library/busybox:1").unwrap())
        );
        let long = format!("reg.example/{}:1", "a/".repeat(120) + "b");
        let k = image_key(&parse_image_ref(&long).unwrap());
        assert!(k.len() <= 200 && k.contains('~'), "{k}");
    }

    fn write_layout(layout: &Path, tag: &str, config: &str) -> String {
        let blobs = layout.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let cdig = "c".repeat(64);
        let mdig = "a".repeat(64);
        fs::write(blobs.join(&cdig), config).unwrap();
        fs::write(
            blobs.join(&mdig),
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"sha256:{cdig}","size":1}},"layers":[]}}"#),
        )
        .unwrap();
        fs::write(
            layout.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{mdig}","size":1,"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#
            ),
        )
        .unwrap();
        format!("sha256:{mdig}")
    }

    #[test]
    fn a_pull_counts_only_once_finished_and_replaces_an_older_one() {
        let dir = tmpdir("pull");
        let s = settings(&dir);
        let r = parse_image_ref("127.0.0.1:5000/busybox:1").unwrap();
        assert!(!is_pulled(&s, &r));
        prepare_pull(&s, &r).unwrap();
        let partial = partial_path(&s, &r);
        let digest = write_layout(&partial, STORE_TAG, r#"{"config":{"Cmd":["sh"]}}"#);
        assert!(
            !is_pulled(&s, &r),
            "a pull in progress is not a pulled image"
        );
        assert_eq!(finish_pull(&s, &r).unwrap(), digest);
        assert!(is_pulled(&s, &r));
        assert_eq!(image_digest(&s, &r), Some(digest.clone()));
        assert!(!partial.exists());
        assert_eq!(read_image_config(&s, &r).unwrap().cmd, vec!["sh"]);

        // Re-pull: the new image replaces the old.
        prepare_pull(&s, &r).unwrap();
        write_layout(&partial, STORE_TAG, r#"{"config":{"Cmd":["echo","new"]}}"#);
        finish_pull(&s, &r).unwrap();
        assert_eq!(read_image_config(&s, &r).unwrap().cmd, vec!["echo", "new"]);

        // A failed pull that wrote nothing usable is reported, not installed.
        prepare_pull(&s, &r).unwrap();
        fs::create_dir_all(&partial).unwrap();
        assert!(finish_pull(&s, &r).is_err());
        abandon_pull(&s, &r);
        assert!(!partial.exists());
        assert!(is_pulled(&s, &r), "the earlier image is still there");

        remove_image(&s, &r).unwrap();
        assert!(!is_pulled(&s, &r));
        assert!(matches!(
            read_image_config(&s, &r),
            Err(ContainerError::NotPulled { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_collection_keeps_what_is_used_or_pulling() {
        let dir = tmpdir("gc");
        let s = settings(&dir);
        let used = parse_image_ref("busybox:1").unwrap();
        let unused = parse_image_ref("redis:7").unwrap();
        let pulling = parse_image_ref("oci:/img/x:1").unwrap();
        let killed = parse_image_ref("nginx:1").unwrap();
        for r in [&used, &unused, &pulling, &killed] {
            prepare_pull(&s, r).unwrap();
        }
        for r in [&used, &unused] {
            write_layout(&partial_path(&s, r), STORE_TAG, "{}");
            finish_pull(&s, r).unwrap();
        }
        // A pull in progress, one whose skopeo was killed, its temp files,
        // and an image set aside by an interrupted replacement.
        for r in [&pulling, &killed] {
            fs::create_dir_all(partial_path(&s, r).join("blobs")).unwrap();
        }
        fs::write(s.store_dir.join("tmp/container_images_storage123"), "x").unwrap();
        fs::create_dir_all(s.store_dir.join("old").join(image_key(&used))).unwrap();

        let got = collect_garbage(
            &s,
            std::slice::from_ref(&used),
            std::slice::from_ref(&pulling),
        );
        assert_eq!(got.images, [image_key(&unused)]);
        assert_eq!(got.leftovers, 2, "the killed pull and old/");
        assert!(is_pulled(&s, &used) && !is_pulled(&s, &unused));
        assert!(
            partial_path(&s, &pulling).exists(),
            "a running pull is kept"
        );
        assert!(!partial_path(&s, &killed).exists());
        assert!(s.store_dir.join("tmp/container_images_storage123").exists());
        // Once no pull runs, skopeo's temporary files go too.
        let got = collect_garbage(&s, std::slice::from_ref(&used), &[]);
        assert_eq!(got.leftovers, 2, "the partial pull and tmp/");
        assert!(is_pulled(&s, &used));
        assert_eq!(
            collect_garbage(&s, std::slice::from_ref(&used), &[]),
            Collected::default()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_store_dir_with_a_colon_is_refused() {
        let mut s = settings(Path::new("/a:b"));
        s.store_dir = "/a:b/store".into();
        let r = parse_image_ref("x:1").unwrap();
        assert!(matches!(
            prepare_pull(&s, &r),
            Err(ContainerError::BadStoreDir { .. })
        ));
    }

    #[test]
    fn image_config_fields_are_read() {
        let doc: Value = serde_json::from_str(
            r#"{"config":{"Env":["PATH=/bin","A=1"],"Entrypoint":["/init"],"Cmd":["run"],"WorkingDir":"/srv","User":"app","StopSignal":"SIGQUIT"}}"#,
        )
        .unwrap();
        let c = image_config_from_json(&doc);
        assert_eq!(c.env, vec!["PATH=/bin", "A=1"]);
        assert_eq!(c.entrypoint, vec!["/init"]);
        assert_eq!(c.cmd, vec!["run"]);
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.user, "app");
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(
            image_config_from_json(&serde_json::json!({})),
            ImageConfig::default()
        );
    }
}
