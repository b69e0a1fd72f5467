//! Colours on a terminal only: off when stdout is not a TTY or `NO_COLOR`
//! is set (no-color.org), and the terminal's width.

use std::ffi::OsString;
use std::io::IsTerminal;

/// Whether to write colour escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// For stdout, from the environment.
    pub fn detect() -> Style {
        Style::decide(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR"),
        )
    }

    /// Colours on a TTY unless `NO_COLOR` is set to something non-empty.
    pub fn decide(tty: bool, no_color: Option<OsString>) -> Style {
        let off = no_color.is_some_and(|v| !v.is_empty());
        Style { color: tty && !off }
    }

    /// `text` in SGR colour `code` (e.g. "32" green), or as it is.
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color && !code.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A service status word in its colour.
    pub fn status(&self, status: &str, text: &str) -> String {
        self.paint(status_color(status), text)
    }
}

/// The colour of a status word: running green, failed red, in between
/// yellow, stopped plain.
pub fn status_color(status: &str) -> &'static str {
    match status {
        "running" => "32",
        "failed" => "31",
        "unknown" => "33",
        _ => "",
    }
}

/// Colours for prefixes that tell several services apart.
pub const NAME_COLORS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

// ioctl's request is an unsigned long in glibc and an int in musl.
const TIOCGWINSZ: libc::Ioctl = libc::TIOCGWINSZ as libc::Ioctl;

/// The terminal's width in columns, when stdout is one.
pub fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own, and
    // only reads fd 1; a non-terminal fd makes it fail without writing.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_tty_without_no_color() {
        assert!(Style::decide(true, None).color);
        assert!(!Style::decide(false, None).color);
        assert!(!Style::decide(true, Some("1".into())).color);
        // An empty NO_COLOR counts as unset, as no-color.org says.
        assert!(Style::decide(true, Some("".into())).color);
        let on = Style { color: true };
        assert_eq!(on.status("failed", "failed "), "\x1b[31mfailed \x1b[0m");
        assert_eq!(on.status("stopped", "stopped"), "stopped");
        assert_eq!(Style { color: false }.status("failed", "x"), "x");
    }
}
