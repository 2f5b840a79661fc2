//! The systemd user units that flush rsend's queue by themselves (`rsend --install-units`):
//! contrib/systemd's queue units rendered for this rsend binary and this queue directory. Both paths
//! end up inside unit-file lines, so anything that could end the line or be read as a systemd
//! specifier, variable or escape is refused or escaped.

use std::path::Path;

const SERVICE: &str = include_str!("../../contrib/systemd/rsend-queue.service");
const TIMER: &str = include_str!("../../contrib/systemd/rsend-queue.timer");
const PATH: &str = include_str!("../../contrib/systemd/rsend-queue.path");

/// The lines of the unit templates that name the binary and the queue.
const EXAMPLE_EXEC: &str = "ExecStart=@BINDIR@/rsend -q --due-only";
const EXAMPLE_WATCH: &str = "PathChanged=%S/postie/queue";

/// One unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: &'static str,
    pub text: String,
}

/// A path as unit-file text: UTF-8, absolute, no control character, no backslash (an escape,
/// or at the end of a line a continuation), no leading or trailing space; `%` doubled (a
/// specifier otherwise).
fn unit_path(path: &Path, what: &str) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{what} {} is not UTF-8", path.display()))?;
    if !path.is_absolute() {
        return Err(format!("{what} {text:?} is not an absolute path"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(format!(
            "{what} {text:?} contains {c:?}, which cannot be written into a unit file"
        ));
    }
    if text.trim() != text {
        return Err(format!("{what} {text:?} ends with a space"));
    }
    Ok(text.replace('%', "%%"))
}

/// A path as one ExecStart argument: double-quoted, with `"` escaped and `$` doubled (a
/// variable otherwise).
fn exec_argument(unit_text: &str) -> String {
    format!("\"{}\"", unit_text.replace('"', "\\\"").replace('$', "$$"))
}

/// The three units for `exe` flushing `queue_dir`.
pub fn render(exe: &Path, queue_dir: &Path) -> Result<Vec<Unit>, String> {
    let exe = unit_path(exe, "the rsend binary")?;
    let dir = unit_path(queue_dir, "the queue directory")?;
    let exec = format!(
        "ExecStart={} -q --due-only {}",
        exec_argument(&exe),
        exec_argument(&format!("--queue-dir={dir}"))
    );
    let watch = format!("PathChanged={dir}");
    let replace = |template: &str, from: &str, to: &str| -> Result<String, String> {
        if !template.contains(from) {
            return Err(format!("the unit template has no {from:?} line"));
        }
        Ok(template.replace(from, to))
    };
    Ok(vec![
        Unit {
            name: "rsend-queue.service",
            text: replace(SERVICE, EXAMPLE_EXEC, &exec)?,
        },
        Unit {
            name: "rsend-queue.timer",
            text: TIMER.to_string(),
        },
        Unit {
            name: "rsend-queue.path",
            text: replace(PATH, EXAMPLE_WATCH, &watch)?,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_binary_and_the_queue() {
        let units = render(Path::new("/opt/my rsend"), Path::new("/home/a/q 100%")).unwrap();
        assert!(units[0].text.contains(
            "ExecStart=\"/opt/my rsend\" -q --due-only \"--queue-dir=/home/a/q 100%%\"\n"
        ));
        assert!(units[2].text.contains("PathChanged=/home/a/q 100%%\n"));
        assert_eq!(units[1].text, TIMER);
    }

    #[test]
    fn quotes_and_dollars_stay_inside_the_argument() {
        let units = render(Path::new("/bin/r\"s$HOME"), Path::new("/q")).unwrap();
        assert!(units[0].text.contains("ExecStart=\"/bin/r\\\"s$$HOME\""));
    }

    #[test]
    fn refuses_what_would_end_or_continue_a_line() {
        for bad in [
            "/q\nExecStartPre=/bin/evil",
            "/q\rx",
            "/q\\",
            "relative/q",
            "/q ",
        ] {
            assert!(
                render(Path::new("/usr/bin/rsend"), Path::new(bad)).is_err(),
                "{bad:?}"
            );
            assert!(render(Path::new(bad), Path::new("/q")).is_err(), "{bad:?}");
        }
    }
}
