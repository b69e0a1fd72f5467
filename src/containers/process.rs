//! A container's process resolved against its image: args from the
//! service's `cmd` or the image's entrypoint, env, working directory, user.

use std::collections::BTreeMap;

use crate::containers::error::ContainerError;
use crate::containers::store::ImageConfig;
use crate::proc::spawn::DEFAULT_PATH;

/// How the service wants its process run (from its definition).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Empty: the image's entrypoint, then `args` or else the image's cmd.
    /// Set: exactly `cmd` + `args` (the image's entrypoint is not used, as
    /// for a plain service: `cmd` is the executable).
    pub cmd: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    /// `name`, `uid`, `name:group`, `uid:gid`, resolved in the image.
    pub user: Option<String>,
}

/// The process part of config.json, resolved against the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedProcess {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolves the service's process against the image: see [`ProcessSpec`].
/// `passwd`/`group` are the image's `/etc/passwd` and `/etc/group`.
pub fn resolve_process(
    spec: &ProcessSpec,
    image: &ImageConfig,
    image_name: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedProcess, ContainerError> {
    let args = process_args(spec, image);
    if args.first().is_none_or(|a| a.is_empty()) {
        return Err(ContainerError::NoCommand {
            image: image_name.to_string(),
        });
    }
    let cwd = process_cwd(spec, image)?;
    let user_spec = spec
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .or(Some(image.user.as_str()).filter(|u| !u.is_empty()))
        .unwrap_or("0");
    let user = resolve_image_user(user_spec, passwd, group)?;
    let env = process_env(spec, image, user.home.as_deref());
    Ok(ResolvedProcess {
        args,
        env,
        cwd,
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids,
    })
}

fn process_args(spec: &ProcessSpec, image: &ImageConfig) -> Vec<String> {
    if !spec.cmd.is_empty() {
        return std::iter::once(spec.cmd.clone())
            .chain(spec.args.iter().cloned())
            .collect();
    }
    let tail = if spec.args.is_empty() {
        &image.cmd
    } else {
        &spec.args
    };
    image
        .entrypoint
        .iter()
        .chain(tail.iter())
        .cloned()
        .collect()
}

fn process_cwd(spec: &ProcessSpec, image: &ImageConfig) -> Result<String, ContainerError> {
    Ok(
        match spec.working_dir.as_deref().filter(|d| !d.is_empty()) {
            Some(d) if d.starts_with('/') => d.to_string(),
            Some(d) => return Err(ContainerError::BadWorkingDir { dir: d.to_string() }),
            // Docker accepts a relative WorkingDir in an image, meaning from /.
            None if image.working_dir.is_empty() => "/".to_string(),
            None if image.working_dir.starts_with('/') => image.working_dir.clone(),
            None => format!("/{}", image.working_dir),
        },
    )
}

/// Image env in its order, then the service's on top (later wins); `PATH`
/// and `HOME` (the user's, else `/`) when neither sets them.
fn process_env(spec: &ProcessSpec, image: &ImageConfig, home: Option<&str>) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |k: &str, v: &str, env: &mut Vec<(String, String)>| match env
        .iter_mut()
        .find(|(key, _)| key == k)
    {
        Some(slot) => slot.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    for e in &image.env {
        if let Some((k, v)) = e.split_once('=') {
            if !k.is_empty() {
                set(k, v, &mut env);
            }
        }
    }
    for (k, v) in &spec.env {
        set(k, v, &mut env);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_string(), home.unwrap_or("/").to_string()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// A user of the image (from its own passwd and group files, never the
/// host's).
struct ImageUser {
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
    home: Option<String>,
}

fn field<'a>(e: &[&'a str], i: usize) -> &'a str {
    e.get(i).copied().unwrap_or("")
}

/// The lines of a passwd or group file split at ':', those with at least
/// `min` fields.
fn entries(text: Option<&str>, min: usize) -> Vec<Vec<&str>> {
    text.unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= min)
        .collect()
}

/// `user`, `uid`, `user:group` or `uid:gid` as Docker resolves them.
fn resolve_image_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ImageUser, ContainerError> {
    let unknown = |reason: String| ContainerError::UnknownUser {
        user: spec.to_string(),
        reason,
    };
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid, name, home) = passwd_user(u, passwd).map_err(unknown)?;
    // group: name:x:gid:member,member
    let groups = entries(group, 3);
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| field(e, 0) == g)
                .and_then(|e| field(e, 2).parse::<u32>().ok())
                .ok_or_else(|| unknown(format!("no group {g:?} in the image's /etc/group")))?,
        };
    }
    let mut additional: Vec<u32> = match &name {
        Some(n) => groups
            .iter()
            .filter(|e| field(e, 3).split(',').any(|m| m == n))
            .filter_map(|e| field(e, 2).parse::<u32>().ok())
            .filter(|&g| g != gid)
            .collect(),
        None => Vec::new(),
    };
    additional.sort_unstable();
    additional.dedup();
    Ok(ImageUser {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

/// uid, primary gid, name and home of `u` (a name or a uid) in the image's
/// passwd (`name:x:uid:gid:gecos:home:shell`).
type PasswdUser = (u32, u32, Option<String>, Option<String>);

fn passwd_user(u: &str, passwd: Option<&str>) -> Result<PasswdUser, String> {
    let entries = entries(passwd, 4);
    let found = |e: &Vec<&str>, uid: u32, name: Option<String>| {
        (
            uid,
            field(e, 3).parse::<u32>().unwrap_or(0),
            name,
            Some(field(e, 5).to_string()).filter(|h| !h.is_empty()),
        )
    };
    if let Ok(uid) = u.parse::<u32>() {
        return Ok(
            match entries
                .iter()
                .find(|e| field(e, 2).parse::<u32>() == Ok(uid))
            {
                Some(e) => found(e, uid, Some(field(e, 0).to_string())),
                // Docker's rule: an unknown numeric uid runs with gid 0.
                None => (uid, 0, None, None),
            },
        );
    }
    let Some(e) = entries.iter().find(|e| field(e, 0) == u) else {
        return Err(match passwd {
            Some(_) => format!("no user {u:?} in the image's /etc/passwd"),
            None => "the image has no /etc/passwd; use a numeric uid".to_string(),
        });
    };
    let uid = field(e, 2)
        .parse::<u32>()
        .map_err(|_| format!("bad uid for {u:?} in the image's /etc/passwd"))?;
    Ok(found(e, uid, Some(u.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::test_support::{GROUP, PASSWD};

    fn image() -> ImageConfig {
        ImageConfig {
            env: vec![
                "PATH=/usr/bin:/bin".into(),
                "A=image".into(),
                "B=image".into(),
            ],
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into(), "--port=1".into()],
            working_dir: "/srv".into(),
            user: String::new(),
            stop_signal: None,
        }
    }

    #[test]
    fn cmd_replaces_the_entrypoint_and_empty_cmd_uses_the_image() {
        let img = image();
        let spec = ProcessSpec {
            cmd: "httpd".into(),
            args: vec!["-f".into()],
            ..Default::default()
        };
        let p = resolve_process(&spec, &img, "i", None, None).unwrap();
        assert_eq!(p.args, vec!["httpd", "-f"]);

        let spec = ProcessSpec::default();
        let p = resolve_process(&spec, &img, "i", None, None).unwrap();
        assert_eq!(p.args, vec!["/entry", "serve", "--port=1"]);

        let spec = ProcessSpec {
            args: vec!["other".into()],
            ..Default::default()
        };
        let p = resolve_process(&spec, &img, "i", None, None).unwrap();
        assert_eq!(
            p.args,
            vec!["/entry", "other"],
            "args replace the image's cmd"
        );

        let e = resolve_process(
            &ProcessSpec::default(),
            &ImageConfig::default(),
            "img:1",
            None,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("img:1"), "{e}");
    }

    #[test]
    fn service_env_goes_on_top_of_the_image_env() {
        let mut env = BTreeMap::new();
        env.insert("B".to_string(), "service".to_string());
        env.insert("C".to_string(), "service".to_string());
        let spec = ProcessSpec {
            cmd: "x".into(),
            env,
            ..Default::default()
        };
        let p = resolve_process(&spec, &image(), "i", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(
            p.env,
            vec![
                "PATH=/usr/bin:/bin",
                "A=image",
                "B=service",
                "C=service",
                "HOME=/root"
            ]
        );
        // No PATH anywhere: Docker's default.
        let p = resolve_process(&spec, &ImageConfig::default(), "i", None, None).unwrap();
        assert!(p.env.contains(&format!("PATH={DEFAULT_PATH}")));
        assert!(p.env.contains(&"HOME=/".to_string()));
    }

    #[test]
    fn working_dir_and_user_come_from_the_service_else_the_image() {
        let mut img = image();
        img.user = "app".into();
        let p = resolve_process(
            &ProcessSpec::default(),
            &img,
            "i",
            Some(PASSWD),
            Some(GROUP),
        )
        .unwrap();
        assert_eq!((p.uid, p.gid, p.cwd.as_str()), (1000, 1000, "/srv"));
        assert_eq!(p.additional_gids, vec![10, 29]);
        assert!(p.env.contains(&"HOME=/home/app".to_string()));

        let spec = ProcessSpec {
            user: Some("root".into()),
            working_dir: Some("/tmp".into()),
            ..Default::default()
        };
        let p = resolve_process(&spec, &img, "i", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((p.uid, p.gid, p.cwd.as_str()), (0, 0, "/tmp"));

        for (user, uid, gid) in [
            ("1000", 1000, 1000),
            ("4242", 4242, 0),
            ("app:wheel", 1000, 10),
            ("0:29", 0, 29),
        ] {
            let spec = ProcessSpec {
                user: Some(user.into()),
                ..Default::default()
            };
            let p = resolve_process(&spec, &img, "i", Some(PASSWD), Some(GROUP)).unwrap();
            assert_eq!((p.uid, p.gid), (uid, gid), "{user}");
        }
        for user in ["nobody", "app:nogroup"] {
            let spec = ProcessSpec {
                user: Some(user.into()),
                ..Default::default()
            };
            let e = resolve_process(&spec, &img, "i", Some(PASSWD), Some(GROUP)).unwrap_err();
            assert!(
                matches!(e, ContainerError::UnknownUser { .. }),
                "{user}: {e}"
            );
        }
        let spec = ProcessSpec {
            working_dir: Some("relative".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve_process(&spec, &img, "i", Some(PASSWD), Some(GROUP)),
            Err(ContainerError::BadWorkingDir { .. })
        ));
    }
}
