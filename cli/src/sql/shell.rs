//! The interactive shell: line editing and history (rustyline), statements over several lines
//! until a `;` ends them, Ctrl-C clearing the line (and cancelling a running push query), and
//! Ctrl-D or `exit` leaving.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use super::render::Session;

/// Reads and runs statements until the user leaves.
pub(crate) fn run(session: &mut Session, interrupted: &Arc<AtomicBool>) -> Result<()> {
    let mut editor = DefaultEditor::new().context("starting the line editor")?;
    // After the editor: rustyline takes SIGINT for itself when it starts, and Ctrl-C outside
    // the prompt must reach a running push query (signal-hook chains to rustyline's handler).
    super::cancel_on_ctrl_c(interrupted)?;
    let history = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".moldau_sql_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!("Statements end with ';'. Ctrl-C cancels, Ctrl-D or 'exit' leaves.");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "moldau> " } else { "     -> " };
        match editor.readline(prompt) {
            Ok(line) => {
                if buffer.is_empty()
                    && matches!(line.trim().to_ascii_lowercase().as_str(), "exit" | "quit" | "exit;" | "quit;")
                {
                    break;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if !ends_statement(&buffer) {
                    continue;
                }
                let text = std::mem::take(&mut buffer);
                let _ = editor.add_history_entry(text.trim_end());
                if let Err(e) = session.run(&text) {
                    eprintln!("error: {e}");
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading a line"),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

/// Whether `text` ends with a `;` outside quotes and comments (a complete statement).
pub(crate) fn ends_statement(text: &str) -> bool {
    let mut last_significant = None;
    let mut chars = text.chars().peekable();
    let (mut single, mut double, mut line_comment, mut block_comment) = (false, false, false, false);
    while let Some(c) = chars.next() {
        if line_comment {
            line_comment = c != '\n';
            continue;
        }
        if block_comment {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                block_comment = false;
            }
            continue;
        }
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '-' if !single && !double && chars.peek() == Some(&'-') => {
                line_comment = true;
                continue;
            }
            '/' if !single && !double && chars.peek() == Some(&'*') => {
                chars.next();
                block_comment = true;
                continue;
            }
            _ => {}
        }
        if !c.is_whitespace() {
            last_significant = Some((c, single || double));
        }
    }
    matches!(last_significant, Some((';', false)))
}

#[cfg(test)]
mod tests {
    use super::ends_statement;

    #[test]
    fn should_end_a_statement_at_a_semicolon_outside_quotes_and_comments() {
        assert!(ends_statement("SHOW STREAMS;"));
        assert!(ends_statement("SELECT 1\nFROM s;  \n"));
        assert!(!ends_statement("SELECT ';"));
        assert!(!ends_statement("SELECT 1 -- ;"));
        assert!(ends_statement("SELECT 1; -- done"));
        assert!(!ends_statement("SELECT 1 /* ; */"));
        assert!(!ends_statement("CREATE STREAM s (a INT)"));
    }
}
