//! Shell completions and man pages from the one command-line definition,
//! and the service names the completion scripts ask the running init for
//! (`irisctl __complete-services`, hidden).

use std::path::Path;

use clap::CommandFactory;

use crate::args::{Cli, Shell};
use crate::http::{exchange, CtlError};
use crate::request::QUICK_TIMEOUT;
use crate::write_stdout;

/// The command line as users see it: without the hidden commands, which
/// the generators would otherwise offer.
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    clap::Command::new("irisctl")
        .about(full.get_about().cloned().unwrap_or_default())
        .after_help(full.get_after_help().cloned().unwrap_or_default())
        .args(full.get_arguments().cloned())
        .subcommands(visible)
}

/// Bash: service names for the commands that take them, from the init the
/// command line names (`--socket`) or `IRIS_SOCKET`; the rest as generated.
const BASH_SERVICES: &str = r#"
# Service names come from the running init: `irisctl __complete-services`.
_irisctl_services() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local i word sub="" names=0 socket=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        case "$word" in
            --socket)
                if [[ "${COMP_WORDS[i+1]}" == "=" ]]; then ((i++)); fi
                socket=(--socket "${COMP_WORDS[i+1]}"); ((i++)) ;;
            -n|--tail|--since|--timeout) ((i++)) ;;
            -*) ;;
            *) if [[ -z "$sub" ]]; then sub="$word"; else ((names++)); fi ;;
        esac
    done
    case "$prev" in --socket|=|-n|--tail|--since|--timeout) _irisctl "$@"; return ;; esac
    if [[ "$cur" != -* ]]; then
        case "$sub,$names" in
            status,0|start,0|stop,0|restart,0|delete,0|exec,0|logs,*|events,*|watch,*)
                local services
                services="$("${COMP_WORDS[0]}" "${socket[@]}" __complete-services 2>/dev/null)"
                COMPREPLY=($(compgen -W "$services" -- "$cur"))
                return 0 ;;
        esac
    fi
    _irisctl "$@"
}
complete -F _irisctl_services -o bashdefault -o default irisctl
"#;

/// Zsh: the helper the `name`/`names` arguments call instead of `_default`.
const ZSH_SERVICES: &str = r#"
# Service names come from the running init: `irisctl __complete-services`.
_irisctl_services() {
    local -a line socket services
    line=(${(z)BUFFER})
    local i
    for (( i = 1; i <= $#line; i++ )); do
        case $line[i] in
            --socket) socket=(--socket ${(Q)line[i+1]}) ;;
            --socket=*) socket=(--socket ${(Q)${line[i]#--socket=}}) ;;
        esac
    done
    services=(${(f)"$(irisctl $socket __complete-services 2>/dev/null)"})
    _describe -t services 'service' services
}
"#;

/// Fish: service names after the commands that take them.
const FISH_SERVICES: &str = r#"
# Service names come from the running init: `irisctl __complete-services`.
function __irisctl_services
    set -l tokens (commandline -opc)
    set -l socket (string replace -rf -- '^--socket=(.+)$' '$1' $tokens)
    set -l i (contains -i -- --socket $tokens)
    if test -n "$i"; and test (count $tokens) -gt $i
        set socket $tokens[(math $i + 1)]
    end
    if set -q socket[1]
        irisctl --socket $socket[1] __complete-services 2>/dev/null
    else
        irisctl __complete-services 2>/dev/null
    end
end
complete -c irisctl -n "__fish_seen_subcommand_from status start stop restart delete exec logs events watch" -f -a "(__irisctl_services)"
"#;

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut cmd = visible_command();
    let mut buf = Vec::new();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, "irisctl", &mut buf);
    let generated = String::from_utf8_lossy(&buf).into_owned();
    match shell {
        Shell::Bash => generated + BASH_SERVICES,
        Shell::Zsh => zsh_with_services(&generated),
        Shell::Fish => generated + FISH_SERVICES,
    }
}

/// Points the zsh specs of the `name` and `names` arguments at
/// `_irisctl_services` and defines it before the generated function.
fn zsh_with_services(generated: &str) -> String {
    let mut out = String::new();
    for line in generated.lines() {
        let takes_names = line.starts_with("':name -- ") || line.starts_with("'*::names -- ");
        if takes_names && line.contains(":_default'") {
            out.push_str(&line.replace(":_default'", ":_irisctl_services'"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
        if line.starts_with("#compdef") {
            out.push_str(ZSH_SERVICES);
        }
    }
    out
}

/// `irisctl man`: irisctl.1 on stdout, or every page into `dir`.
pub fn man(dir: Option<&Path>) -> Result<i32, CtlError> {
    let cmd = visible_command()
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true);
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(cmd, dir))
                .map_err(CtlError::Output)?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(CtlError::Output)?;
            write_stdout(&page)?;
        }
    }
    Ok(0)
}

/// `irisctl __complete-services`: the names, one a line.
pub fn services(socket: &Path) -> Result<i32, CtlError> {
    let req = iris_init::client::Request::new("GET", "/v1/services");
    let body = exchange(socket, &req, Some(QUICK_TIMEOUT))?.body;
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut out = String::new();
    for svc in list.as_array().into_iter().flatten() {
        if let Some(name) = svc.get("name").and_then(|n| n.as_str()) {
            out.push_str(name);
            out.push('\n');
        }
    }
    write_stdout(out.as_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_offer_the_commands_but_not_the_hidden_ones() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = script(shell);
            assert!(
                text.contains("watch") && text.contains("completions"),
                "{shell:?}"
            );
            assert!(!text.contains("'man:"), "{shell:?}");
            assert!(
                text.contains("__complete-services"),
                "{shell:?}: no service names"
            );
        }
        let zsh = script(Shell::Zsh);
        assert!(
            zsh.contains("':name -- The service:_irisctl_services'"),
            "{zsh}"
        );
        assert!(!zsh.contains("The service:_default"), "{zsh}");
    }
}
