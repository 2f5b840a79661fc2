//! The completion scripts `rsend --completions SHELL` and `rfetch --completions SHELL` print (what
//! scripts/install.sh and the Debian package install): each loads in its shell without an error
//! and completes a long option from its first letters, in bash, zsh and fish. The shells come
//! from `tests/stack/stack.sh deps tests`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RSEND: &str = env!("CARGO_BIN_EXE_rsend");
const RFETCH: &str = env!("CARGO_BIN_EXE_rfetch");

/// (binary, program name, what is typed, the option it must complete to)
const CASES: [(&str, &str, &str, &str); 2] = [
    (RSEND, "rsend", "--read-env", "--read-envelope-from"),
    (RFETCH, "rfetch", "--fetchm", "--fetchmailrc"),
];

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "postie-completions-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The script the binary prints, written to `dir/name`.
fn script(binary: &str, shell: &str, dir: &Path, name: &str) -> PathBuf {
    let out = Command::new(binary)
        .args(["--completions", shell])
        .output()
        .expect("run the binary");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{binary} --completions {shell}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).expect("write script");
    path
}

fn shell(program: &str) -> Command {
    let found = ["/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{program} is not installed; run: tests/stack/stack.sh deps tests")
        });
    let mut c = Command::new(found);
    c.env_remove("BASH_ENV").env_remove("ENV");
    c
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn bash_loads_and_completes_an_option() {
    let dir = TempDir::new("bash");
    for (binary, name, typed, expected) in CASES {
        let file = script(binary, "bash", &dir.0, name);
        // What bash does on TAB: the function `complete -p` names, with COMP_* set.
        let program = format!(
            "set -e\nsource '{file}'\n\
             fn=$(complete -p {name} | sed -n 's/.* -F \\([^ ]*\\) .*/\\1/p')\n\
             [ -n \"$fn\" ] || {{ echo 'no completion function registered' >&2; exit 1; }}\n\
             COMP_LINE='{name} {typed}'; COMP_POINT=${{#COMP_LINE}}\n\
             COMP_WORDS=({name} {typed}); COMP_CWORD=1\n\
             \"$fn\" {name} {typed} {name}\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            file = file.display()
        );
        let out = shell("bash")
            .args(["--norc", "--noprofile", "-c", &program])
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name}: {}",
            text(&out)
        );
        assert_eq!(stdout.trim(), expected, "{name}: {}", text(&out));
    }
}

#[test]
fn zsh_loads_and_completes_an_option() {
    let dir = TempDir::new("zsh");
    for (binary, name, typed, expected) in CASES {
        let fpath = dir.0.join(name);
        std::fs::create_dir_all(&fpath).expect("fpath dir");
        let file = script(binary, "zsh", &fpath, &format!("_{name}"));

        // Loading: compinit, then the file sourced as a plain script registers itself.
        let load = format!(
            "autoload -U compinit && compinit -u -D && source '{}' && (( $+_comps[{name}] ))",
            file.display()
        );
        let out = shell("zsh")
            .args(["-f", "-c", &load])
            .output()
            .expect("zsh");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name}: {}",
            text(&out)
        );

        // Completing: an interactive zsh on a pseudo-terminal (zsh/zpty) with the directory in
        // its fpath gets the typed words and a TAB; the full option must appear on its terminal.
        let driver = r#"
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=($FPDIR \$fpath); autoload -U compinit; compinit -u -D"
zpty -w -n z "$TYPED"$'\t'
collected=""
for i in {1..150}; do
  while zpty -r -t z chunk 2>/dev/null; do collected+=$chunk; done
  if [[ $collected == *"$EXPECTED"* ]]; then zpty -d z; exit 0; fi
  sleep 0.1
done
print -r -- "$collected"
zpty -d z
exit 1
"#;
        let out = shell("zsh")
            .args(["-f", "-c", driver])
            .env("FPDIR", &fpath)
            .env("TYPED", format!("{name} {typed}"))
            .env("EXPECTED", expected)
            .output()
            .expect("zsh");
        assert!(
            out.status.success(),
            "{name}: typing '{typed}<TAB>' did not complete {expected}: {}",
            text(&out)
        );
    }
}

#[test]
fn fish_loads_and_completes_an_option() {
    let dir = TempDir::new("fish");
    for (binary, name, typed, expected) in CASES {
        let file = script(binary, "fish", &dir.0, &format!("{name}.fish"));
        let program = format!(
            "source '{}'; or exit 1; complete --do-complete '{name} {typed}'",
            file.display()
        );
        let out = shell("fish")
            .args(["--no-config", "-c", &program])
            .env("HOME", &dir.0)
            .output()
            .expect("fish");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name}: {}",
            text(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let offered: Vec<&str> = stdout
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default())
            .collect();
        assert_eq!(offered, [expected], "{name}: {}", text(&out));
    }
}

/// `rsend --version | head -1` and the like: a reader that closed the pipe early is no error
/// and no crash (println! panicked with "failed printing to stdout: Broken pipe", exit 101).
#[test]
fn informational_output_into_a_closed_pipe_is_not_a_crash() {
    for (binary, args) in [
        (RSEND, &["--version"][..]),
        (RSEND, &["--completions", "bash"][..]),
        (RFETCH, &["-V"][..]),
        (RFETCH, &["--completions", "zsh"][..]),
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(binary)
            .args(args)
            .env("HOME", "/nonexistent")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{binary} {args:?}: {stderr}");
        // rfetch -V without a configuration ends in fetchmail's "no mailservers" (5)
        let expected = if args == ["-V"] { 5 } else { 0 };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{binary} {args:?}: {stderr}"
        );
    }
}
