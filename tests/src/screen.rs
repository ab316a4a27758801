//! A real terminal for tests of terminal features: a tmux session of a given size, on a
//! server of its own (its socket in a temporary directory), running one shell line; keys
//! are typed into it and its screen is read back as text. The server is killed (by its
//! socket, nothing else) when the [`Screen`] is dropped.

use std::process::{Command, Output};

/// A tmux session running a shell line.
#[derive(Debug)]
pub struct Screen {
    dir: tempfile::TempDir,
}

impl Screen {
    /// Starts `line` (run by sh) on a `cols` by `rows` terminal. When `line` ends, the pane
    /// shows `[ended N]` with its exit status and stays, so that its last screen can be read.
    pub fn start(line: &str, cols: u16, rows: u16) -> Self {
        let dir = tempfile::tempdir().expect("a directory for tmux");
        let screen = Self { dir };
        let held = format!("{line}; echo \"[ended $?]\"; exec cat");
        let (cols, rows) = (cols.to_string(), rows.to_string());
        screen.tmux(&["new-session", "-d", "-x", &cols, "-y", &rows, "sh", "-c", &held]);
        screen
    }

    /// Types `text` as it is.
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-l", text]);
    }

    /// Presses keys by tmux's names (`Enter`, `C-c`).
    pub fn press(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Types a line and Enter.
    pub fn type_line(&self, text: &str) {
        self.type_text(text);
        self.press(&["Enter"]);
    }

    /// Resizes the terminal (what the programs on it see as SIGWINCH).
    pub fn resize(&self, cols: u16, rows: u16) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        self.tmux(&["resize-window", "-x", &cols, "-y", &rows]);
    }

    /// What the terminal shows now, its lines trimmed of trailing blanks.
    pub fn text(&self) -> String {
        let shown = self.tmux(&["capture-pane", "-p", "-J"]);
        String::from_utf8_lossy(&shown.stdout).into_owned()
    }

    /// Waits until the terminal shows `expected` (for a minute at most, then panics with
    /// the screen) and returns the screen.
    pub async fn wait_for(&self, expected: &str) -> String {
        let mut shown = String::new();
        crate::eventually(&format!("{expected:?} on the terminal"), || {
            shown = self.text();
            shown.contains(expected)
        })
        .await;
        shown
    }

    fn tmux(&self, args: &[&str]) -> Output {
        let socket = self.dir.path().join("tmux.sock");
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux (apt-get install tmux)");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let socket = self.dir.path().join("tmux.sock");
        let _ = Command::new("tmux").arg("-S").arg(&socket).arg("kill-server").output();
    }
}
